"""A batched vector env for gymnasium's MuJoCo v5 tasks, bit for bit the same as gymnasium's.

:class:`MujocoBatchEnv` is a drop-in for :class:`~trpo_bench.envs.VecEnv` on the tasks of
:data:`~trpo_bench.mujoco_tasks.TASKS` at their default arguments. Per env a step is one
``ctrl`` copy, ``mj_step(nstep=frame_skip)`` and ``mj_rnePostConstraint``, the calls
gymnasium's ``MujocoEnv._step_mujoco_simulation`` makes; observations, rewards, flags and
infos are then computed for all envs at once (``mujoco_tasks``). gymnasium's own per-env
Python around the physics (its wrappers, ``is_healthy`` twice, ``state_vector``, dict infos)
is what this saves: on Hopper-v5 about a third of a step.

Resets draw from one ``np.random.Generator`` per env seeded as ``gymnasium.Env.reset(seed=)``
seeds it, in the order gymnasium's ``reset_model`` draws. State capture is plain values only
(NumPy arrays, numbers, strings, dicts and lists of them): per env MuJoCo's integration state
(``mj_getState(mjSTATE_INTEGRATION)``: time, qpos, qvel, act, warm start, controls, applied
forces; MuJoCo documents it as what makes the next ``mj_step`` identical), RNG states as
``bit_generator.state`` dicts, and the arrays this class keeps between steps.

``threads`` > 1 steps the envs' physics on that many threads of execution
(:mod:`~trpo_bench.sidecars`): on x86-64 Linux the calling thread steps the first slice
of the envs and a forked sidecar process each further slice, which owns those envs' MjData;
elsewhere threads take the next env not yet stepped (MuJoCo's bindings release the GIL inside
``mj_step``). Each env's MjData is stepped with the same calls wherever it lives, so the bits
do not depend on the thread count or on who stepped it; the NumPy part that follows (all
envs at once) runs on the calling thread, over arrays the sidecars write into.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.utils.seeding import np_random

from trpo_bench import sidecars
from trpo_bench.envs import StepResult, available_cpus, make_env
from trpo_bench.mujoco_tasks import TASKS, Consts
from trpo_bench.sidecars import Sidecar, StepWorker, shared

_STATE = mujoco.mjtState.mjSTATE_INTEGRATION
STEP, RESET, GET, SET = range(1, 5)  # what a sidecar is asked to do with its envs


def resolve_threads(setting: int, num_envs: int) -> int:
    """``env_threads``: 0 means one per available CPU; never more than there are envs."""
    return max(1, min(num_envs, setting if setting > 0 else available_cpus()))


def supports(env_id: str) -> bool:
    """True when ``env_id`` is a task this module restates, registered as gymnasium registers
    it: gymnasium's own class, no extra arguments, no extra wrappers (its time limit may
    differ; it is read from the registry)."""
    if env_id not in TASKS:
        return False
    spec = gym.spec(env_id)
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    return entry.startswith("gymnasium.envs.mujoco.") and not spec.kwargs and not spec.additional_wrappers


class MujocoBatchEnv:
    """``num_envs`` copies of one MuJoCo v5 task; the :class:`~trpo_bench.envs.VecEnv`
    interface (``reset``, ``step``, ``get_state``, ``set_state``, ``obs``, spaces).

    ``max_episode_steps`` defaults to the registered time limit (1,000; Reacher 50);
    ``threads``: how many threads step the physics (see the module docstring).
    """

    def __init__(self, env_id: str, num_envs: int, seed: int, max_episode_steps: int | None = None,
                 threads: int = 1):
        if env_id not in TASKS:
            raise ValueError(f"{env_id!r} has no batched MuJoCo path; use envs.VecEnv")
        self.env_id = env_id
        self.num_envs = num_envs
        self._task = TASKS[env_id]
        # One gymnasium env lends the compiled model, spaces and constants, so they are the
        # very ones gymnasium's env has; its MjData is not stepped.
        proto = make_env(env_id)
        u = proto.unwrapped
        self.model = u.model
        self.frame_skip = u.frame_skip
        self.observation_space = proto.observation_space
        self.action_space = proto.action_space
        self.max_episode_steps = max_episode_steps or gym.spec(env_id).max_episode_steps
        body = {self.model.body(i).name: i for i in range(self.model.nbody)}
        self._c = Consts(dt=u.dt, init_qpos=u.init_qpos.copy(), init_qvel=u.init_qvel.copy(), body=body,
                         body_mass=self.model.body_mass.copy())
        proto.close()
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self._ctrl = [d.ctrl for d in self.datas]  # views into each MjData, kept to skip the attribute lookups
        # What the task reads, stacked over envs: qpos and qvel side by side in one array
        # (gymnasium's state_vector()), then the task's other fields. Each env's step ends by
        # copying its arrays into its rows (``_copies``: (row view, MjData view) pairs). These
        # and the arrays a sidecar reads (actions, reset states, captured states) live in
        # shared memory.
        nq = self.model.nq
        state = shared((num_envs, nq + self.model.nv))
        self._f = {"state": state, "qpos": state[:, :nq], "qvel": state[:, nq:]}
        for name in self._task.fields:
            self._f[name] = shared((num_envs, *getattr(self.datas[0], name).shape))
        self._actions = shared((num_envs, self.model.nu))
        self._resets = shared((num_envs, nq + self.model.nv))
        self._reset_mask = shared((num_envs,), np.bool_)
        self._physics = shared((num_envs, mujoco.mj_stateSize(self.model, _STATE)))
        names = ("qpos", "qvel", *self._task.fields)
        self._copies = [[(self._f[name][i], getattr(d, name)) for name in names] for i, d in enumerate(self.datas)]
        seeds = np.random.SeedSequence(seed).generate_state(num_envs, dtype=np.uint32)  # as VecEnv
        self._seeds = [int(s) for s in seeds]
        self._rngs: list[np.random.Generator] = []
        self._ep_return = np.zeros(num_envs)
        self._ep_len = np.zeros(num_envs, dtype=np.int64)
        self._before: np.ndarray | None = None
        self.obs: np.ndarray | None = None
        self.threads = max(1, min(threads, num_envs))
        # Who steps which envs: the calling thread envs [0, own); each sidecar its slice; or,
        # without sidecars, threads taking envs from a shared iterator.
        self._workers: list[StepWorker] = []
        self._sidecars: list[Sidecar] = []
        self._own = num_envs
        if self.threads > 1 and sidecars.PROCESSES:
            bounds = [int(b) for b in np.linspace(0, num_envs, self.threads + 1).round()]
            self._own = bounds[1]
            self._sidecars = [Sidecar(f"the process stepping envs {lo}-{hi - 1}", {
                kind: partial(fn, lo, hi) for kind, fn in ((STEP, self._step_slice), (RESET, self._reset_slice),
                                                          (GET, self._get_slice), (SET, self._set_slice))})
                for lo, hi in zip(bounds[1:-1], bounds[2:])]
        elif self.threads > 1:
            self._workers = [StepWorker(self._step_envs) for _ in range(self.threads - 1)]

    # ------------------------------------------------------------------ physics
    def _put_reset(self, i: int, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """MujocoEnv.reset after the seed's draws: mj_resetData, the drawn state, set_state's mj_forward."""
        d = self.datas[i]
        mujoco.mj_resetData(self.model, d)
        d.qpos[:] = qpos
        d.qvel[:] = qvel
        mujoco.mj_forward(self.model, d)
        self._gather_rows(i, i + 1)

    def _reset_envs(self, envs) -> None:
        """Reset ``envs``, drawing each one's reset_model noise here, in env order; a sidecar's
        envs take their drawn states from shared memory."""
        remote = False
        nq = self.model.nq
        for i in envs:
            qpos, qvel = self._task.reset_state(self._rngs[i], self._c)
            if i < self._own:
                self._put_reset(i, qpos, qvel)
            else:
                self._resets[i, :nq] = qpos
                self._resets[i, nq:] = qvel
                self._reset_mask[i] = remote = True
        if remote:
            self._on_sidecars(RESET)

    def _on_sidecars(self, kind: int) -> None:
        try:
            for s in self._sidecars:
                s.post(kind)
        finally:  # none is left running what was posted
            errors = self._wait_sidecars()
        if errors:
            raise errors[0]

    def _wait_sidecars(self) -> list[BaseException]:
        """Wait for every sidecar, so that each has finished before anything is raised; what they raised."""
        errors: list[BaseException] = []
        for s in self._sidecars:
            try:
                s.wait()
            except Exception as err:
                errors.append(err)
        return errors

    def _reset_slice(self, lo: int, hi: int) -> None:
        nq = self.model.nq
        for i in range(lo, hi):
            if self._reset_mask[i]:
                self._put_reset(i, self._resets[i, :nq], self._resets[i, nq:])
                self._reset_mask[i] = False

    def _gather_rows(self, lo: int, hi: int) -> None:
        """Copy envs ``lo`` to ``hi - 1``'s MjData arrays into their rows of the stacked fields."""
        for copies in self._copies[lo:hi]:
            for dst, src in copies:
                dst[...] = src

    def reset(self) -> np.ndarray:
        self._rngs = [np_random(s)[0] for s in self._seeds]  # gymnasium's Env.reset(seed=s)
        self.action_space.seed(self._seeds[0])  # as VecEnv seeds its first env's (training draws none)
        self._reset_envs(range(self.num_envs))
        self._before = self._task.position(self._f, self._c)
        self._ep_return[:] = 0.0
        self._ep_len[:] = 0
        self.obs = self._task.observe(self._f, self._c)
        return self.obs

    def _step_envs(self, todo) -> None:
        """``mj_step`` (and ``mj_rnePostConstraint`` where the task reads its output) of the
        envs whose indices ``todo`` yields. Threads share one ``todo``: each index comes out
        once, so each env is stepped once, by whichever thread is free first. Nothing else
        runs here: Python between two ``mj_step`` calls holds the GIL, which the other
        thread then waits for."""
        m, nstep, step, datas = self.model, self.frame_skip, mujoco.mj_step, self.datas
        if self._task.post_constraint:
            post = mujoco.mj_rnePostConstraint
            for i in todo:
                step(m, datas[i], nstep)
                post(m, datas[i])
        else:
            for i in todo:
                step(m, datas[i], nstep)

    def _step_slice(self, lo: int, hi: int) -> None:
        """A sidecar's step: its envs' controls from the shared actions, then as ``_step_envs``."""
        for i in range(lo, hi):
            self._ctrl[i][:] = self._actions[i]
        self._step_envs(range(lo, hi))
        self._gather_rows(lo, hi)

    def step(self, actions: np.ndarray) -> StepResult:
        """One step of every env (``actions``: (N, nu)), resetting those whose episode ended;
        ``StepResult.infos`` holds gymnasium's step infos as (N,) arrays."""
        # MujocoEnv._step_mujoco_simulation: ctrl, mj_step(nstep), mj_rnePostConstraint.
        own = self._own
        todo = iter(range(own))  # next() on it is atomic under the GIL
        started: list[StepWorker] = []
        try:
            if self._sidecars:
                self._actions[own:] = actions[own:]  # float64, as MjData.ctrl takes them
                for s in self._sidecars:
                    s.post(STEP)
            for ctrl, a in zip(self._ctrl[:own], actions[:own]):
                ctrl[:] = a
            for w in self._workers:
                w.start(todo)
                started.append(w)
            self._step_envs(todo)
        finally:  # every worker has finished its envs before anything reads them, error or not
            errors = [err for w in started if (err := w.join()) is not None] + self._wait_sidecars()
        if errors:
            raise errors[0]
        self._gather_rows(0, own)
        task, f = self._task, self._f
        reward, term, infos = task.outcome(self._c, self._before, f, actions)
        obs = task.observe(f, self._c)
        self._before = task.position(f, self._c)
        self._ep_return += reward
        self._ep_len += 1  # also the TimeLimit wrapper's elapsed steps
        trunc = self._ep_len >= self.max_episode_steps
        trunc &= ~term
        final: dict[int, np.ndarray] = {}
        rets: list[float] = []
        lens: list[int] = []
        ended = (term | trunc).nonzero()[0].tolist()
        if ended:
            for i in ended:
                final[i] = obs[i].copy()
            self._reset_envs(ended)
            rets = [float(self._ep_return[i]) for i in ended]
            lens = [int(self._ep_len[i]) for i in ended]
            self._ep_return[ended] = 0.0
            self._ep_len[ended] = 0
            # The reset rows' observations and positions, from their freshly gathered rows.
            fresh = task.observe(f, self._c)
            obs[ended] = fresh[ended]
            self._before[ended] = task.position(f, self._c)[ended]
        self.obs = obs
        return StepResult(obs, reward, term, trunc, final, rets, lens, infos)

    # -------------------------------------------------------------------- state
    def _get_slice(self, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            mujoco.mj_getState(self.model, self.datas[i], self._physics[i], _STATE)

    def _set_slice(self, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            mujoco.mj_setState(self.model, self.datas[i], self._physics[i], _STATE)

    def get_state(self) -> dict[str, Any]:
        """Plain values only: arrays, numbers, strings, and dicts / lists of them."""
        self._get_slice(0, self._own)
        self._on_sidecars(GET)
        return {
            "backend": "mujoco_batch",
            "physics": self._physics.copy(),
            "np_random": [r.bit_generator.state for r in self._rngs],
            "action_space_rng": self.action_space.np_random.bit_generator.state,
            "before": None if self._before is None else self._before.copy(),
            "obs": None if self.obs is None else self.obs.copy(),
            "ep_return": self._ep_return.copy(),
            "ep_len": self._ep_len.copy(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("backend") != "mujoco_batch":
            raise ValueError("this env state was not captured by MujocoBatchEnv (a gymnasium VecEnv's?)")
        physics = np.asarray(state["physics"], dtype=np.float64)
        if physics.shape != self._physics.shape:
            raise ValueError(f"the env state holds physics of shape {physics.shape}; "
                             f"these {self.num_envs} envs need {self._physics.shape}")
        self._physics[...] = physics
        self._set_slice(0, self._own)
        self._on_sidecars(SET)
        self._rngs = [np_random(0)[0] for _ in range(self.num_envs)]
        for r, s in zip(self._rngs, state["np_random"]):
            r.bit_generator.state = s
        self.action_space.np_random.bit_generator.state = state["action_space_rng"]
        self._before = None if state["before"] is None else np.array(state["before"])
        self.obs = None if state["obs"] is None else np.array(state["obs"])
        self._ep_return[:] = state["ep_return"]
        self._ep_len[:] = state["ep_len"]

    def close(self) -> None:
        for w in self._workers:
            w.stop()
        for s in self._sidecars:
            s.close()
        self._workers, self._sidecars = [], []
        self.datas = []
