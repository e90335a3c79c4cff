"""Seeded environments stepped together in one process, and observation normalization.

:class:`VecEnv` is a small synchronous vector env written for two needs gymnasium's
own does not meet together: the *final* observation of a truncated episode is
returned beside the reset one (GAE bootstraps from it), and the complete state of
every environment (MuJoCo integration state, time-limit counters, RNGs) can be
captured and restored, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np


def register_module(env_id: str) -> str:
    """For ``"package.module:EnvId"`` import the module (which registers EnvId) and return ``EnvId``."""
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        importlib.import_module(module)
        return name
    return env_id


class MujocoWarning(UserWarning):
    """A warning MuJoCo raised (model compiler, simulation), as a Python warning."""


# gymnasium's own model files (HalfCheetah-v5, ...) set a compiler attribute that MuJoCo 4
# deprecates; nothing a user of those tasks can act on, so it is not passed on.
_MUJOCO_IGNORED = ("compiler attribute 'settotalmass' is deprecated",)


def _mujoco_warning(message: str) -> None:
    if message.startswith(_MUJOCO_IGNORED):
        return
    try:
        warnings.warn(f"MuJoCo: {message}", MujocoWarning, stacklevel=2)
    except BaseException:  # noqa: BLE001 - an exception raised into MuJoCo's C code aborts the process
        print(f"MuJoCo warning: {message}", file=sys.stderr)


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings through Python's ``warnings`` (shown once, filterable) instead
    of its default handler, which prints every one and appends it to MUJOCO_LOG.TXT in the
    working directory. A handler someone else installed is left in place."""
    try:
        import mujoco
    except ImportError:
        return
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)


def make_env(env_id: str) -> gym.Env:
    route_mujoco_warnings()
    return gym.make(register_module(env_id), disable_env_checker=True)


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    e = env
    while isinstance(e, gym.Wrapper):
        if isinstance(e, gym.wrappers.TimeLimit):
            return e
        e = e.env
    return None


def _is_mujoco(env: gym.Env) -> bool:
    u = env.unwrapped
    return hasattr(u, "model") and hasattr(u, "data") and type(u.model).__module__.startswith("mujoco")


# MjData fields kept beside MuJoCo's integration state. mj_step leaves the forward pass's
# outputs of the state *before* its integration in these arrays, and tasks read some of them
# before the next mj_step recomputes them (Ant's and Reacher's rewards read ``xpos`` before
# simulating), so restoring qpos / qvel alone would not continue bit for bit. The rest of
# MjData (constraint and contact arenas, solver scratch) is rebuilt by the next mj_step.
MJDATA_FIELDS = (
    "xpos", "xquat", "xmat", "xipos", "ximat", "xanchor", "xaxis", "geom_xpos", "geom_xmat", "site_xpos",
    "site_xmat", "cam_xpos", "cam_xmat", "light_xpos", "light_xdir", "subtree_com", "subtree_linvel",
    "subtree_angmom", "cinert", "cdof", "cdof_dot", "cvel", "cacc", "cfrc_int", "cfrc_ext", "ten_length",
    "ten_velocity", "actuator_length", "actuator_velocity", "actuator_force", "qfrc_actuator", "qfrc_passive",
    "qfrc_bias", "qfrc_constraint", "qfrc_smooth", "qfrc_inverse", "qacc", "qacc_smooth", "sensordata", "energy",
)


def mjdata_state(model, data) -> dict[str, np.ndarray]:
    """MuJoCo's full integration state (``mj_getState``: time, qpos, qvel, act, warm start,
    controls, applied forces, mocap, user data, plugin state) and the derived fields tasks
    read, as named float64 arrays."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    integration = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, integration, spec)
    return {"integration": integration, **{name: getattr(data, name).copy() for name in MJDATA_FIELDS}}


def set_mjdata_state(model, data, state: dict[str, np.ndarray]) -> None:
    import mujoco

    mujoco.mj_setState(model, data, np.asarray(state["integration"], dtype=np.float64),
                       mujoco.mjtState.mjSTATE_INTEGRATION)
    for name in MJDATA_FIELDS:
        getattr(data, name)[...] = state[name]


def get_env_state(env: gym.Env) -> dict[str, Any]:
    """Everything that decides the env's future: simulator state, step counter, RNGs.
    Plain values and NumPy arrays only, so a checkpoint loads without unpickling objects."""
    u = env.unwrapped
    tl = _time_limit(env)
    state: dict[str, Any] = {
        "elapsed_steps": None if tl is None else tl._elapsed_steps,
        "np_random": u.np_random.bit_generator.state,
        "action_space_rng": env.action_space.np_random.bit_generator.state,
    }
    # Pure-Python simulators (classic control, toy text): their plain attributes are the state.
    state["python"] = {k: _plain_copy(v) for k, v in vars(u).items() if _plain(v)}
    if _is_mujoco(env):
        state["mujoco"] = mjdata_state(u.model, u.data)
    return state


def _plain(v: Any) -> bool:
    if isinstance(v, tuple):
        return all(_plain(x) for x in v)
    return v is None or isinstance(v, (bool, int, float, str, np.ndarray, np.generic))


def _plain_copy(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, tuple):
        return tuple(_plain_copy(x) for x in v)
    return v


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    u = env.unwrapped
    tl = _time_limit(env)
    if tl is not None:
        tl._elapsed_steps = state["elapsed_steps"]
    u.np_random.bit_generator.state = state["np_random"]
    env.action_space.np_random.bit_generator.state = state["action_space_rng"]
    for k, v in state.get("python", {}).items():
        if k in vars(u) and _plain(vars(u)[k]):  # only attributes the env has, of plain types
            setattr(u, k, _plain_copy(v))
    if "mujoco" in state:
        set_mjdata_state(u.model, u.data, state["mujoco"])
    # gymnasium's OrderEnforcing wrapper refuses step() before reset(); the env was reset.
    e = env
    while isinstance(e, gym.Wrapper):
        if hasattr(e, "_has_reset"):
            e._has_reset = True
        e = e.env


@dataclass
class StepResult:
    """One vector step. Shapes: obs (N, obs_dim), reward/terminated/truncated (N,).

    ``final_obs[i]`` is the last observation of env i's episode when it ended at this
    step (``obs[i]`` is then already the first observation of the next episode).
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: dict[int, np.ndarray]
    episode_returns: list[float]
    episode_lengths: list[int]
    # gymnasium's step infos as (N,) arrays, from the batched MuJoCo path only (VecEnv drops them)
    infos: dict[str, np.ndarray] | None = None


class VecEnv:
    """``num_envs`` copies of one gymnasium env, stepped in turn, reset automatically; ``wrap``, when
    given, wraps each copy (evaluation sums the reward terms a task reports this way)."""

    def __init__(self, env_id: str, num_envs: int, seed: int, wrap: Callable[[gym.Env], gym.Env] | None = None):
        self.env_id = env_id
        self.envs = [make_env(env_id) if wrap is None else wrap(make_env(env_id)) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        # Distinct, reproducible per-env seeds from one run seed.
        seeds = np.random.SeedSequence(seed).generate_state(num_envs, dtype=np.uint32)
        self._seeds = [int(s) for s in seeds]
        self._ep_return = np.zeros(num_envs)
        self._ep_len = np.zeros(num_envs, dtype=np.int64)
        self._obs_shape = tuple(self.observation_space.shape)
        self.obs: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        obs = []
        for env, s in zip(self.envs, self._seeds):
            env.action_space.seed(s)
            o, _ = env.reset(seed=s)
            obs.append(o)
        self._ep_return[:] = 0.0
        self._ep_len[:] = 0
        self.obs = np.stack(obs).astype(np.float64).reshape(self.num_envs, -1)
        return self.obs

    def step(self, actions: np.ndarray) -> StepResult:
        n = self.num_envs
        next_obs = np.empty_like(self.obs)
        rows = next_obs.reshape(n, *self._obs_shape)  # a view: rows[i] = o copies (and casts) o in place
        rew = np.empty(n)
        term = np.zeros(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        final: dict[int, np.ndarray] = {}
        ended: list[int] = []
        # The loop does only what must happen per env; bookkeeping is vectorized below
        # (the per-step Python overhead here is paid ~2k times per update).
        for i, env in enumerate(self.envs):
            o, r, te, tr, _ = env.step(actions[i])
            rew[i] = r
            if te or tr:
                term[i], trunc[i] = te, (tr and not te)
                final[i] = np.asarray(o, dtype=np.float64).reshape(-1)
                ended.append(i)
                o, _ = env.reset()
            rows[i] = o
        self._ep_return += rew
        self._ep_len += 1
        rets = [float(self._ep_return[i]) for i in ended]
        lens = [int(self._ep_len[i]) for i in ended]
        if ended:
            self._ep_return[ended] = 0.0
            self._ep_len[ended] = 0
        self.obs = next_obs
        return StepResult(next_obs, rew, term, trunc, final, rets, lens)

    def get_state(self) -> dict[str, Any]:
        return {
            "envs": [get_env_state(e) for e in self.envs],
            "obs": None if self.obs is None else self.obs.copy(),
            "ep_return": self._ep_return.copy(),
            "ep_len": self._ep_len.copy(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        for env, s in zip(self.envs, state["envs"]):
            set_env_state(env, s)
        self.obs = state["obs"].copy()
        self._ep_return[:] = state["ep_return"]
        self._ep_len[:] = state["ep_len"]

    def close(self) -> None:
        for e in self.envs:
            e.close()


def available_cpus() -> int:
    """CPUs this process may use: ``TRPO_BENCH_CPUS`` when set (a grid's local pool sets its
    share in each worker), else the scheduler's affinity mask (SLURM's allocation included)."""
    share = os.environ.get("TRPO_BENCH_CPUS", "")
    if share.isdigit() and int(share) > 0:
        return int(share)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_vec_env(env_id: str, num_envs: int, seed: int, backend: str = "auto",
                 captured: dict[str, Any] | None = None, threads: int = 1) -> "VecEnv":
    """The envs a run steps: with ``backend`` "auto", the batched MuJoCo path
    (:class:`~trpo_bench.mujoco_batch.MujocoBatchEnv`, the same bits) for the tasks it restates
    at their default arguments; gymnasium's envs in a :class:`VecEnv` otherwise.

    ``captured``, the env state a resume will restore, decides instead: the backend that
    captured it (the two capture different things). ``threads``: how many CPUs step the batched
    path's envs, one slice each (``env_threads``; 0 is one per available CPU)."""
    if captured is not None:
        backend = "auto" if captured.get("backend") == "mujoco_batch" else "gymnasium"
    if backend == "auto":
        try:
            from trpo_bench import mujoco_batch
        except ImportError:  # no MuJoCo installed
            return VecEnv(env_id, num_envs, seed)
        if mujoco_batch.supports(env_id):
            return mujoco_batch.MujocoBatchEnv(env_id, num_envs, seed,
                                               threads=mujoco_batch.resolve_threads(threads, num_envs))
    return VecEnv(env_id, num_envs, seed)


class RunningMeanStd:
    """Running mean and variance of observations (Chan et al. parallel update).

    ``normalize`` clips to [-clip, clip], as sb3's VecNormalize and Tianshou do (clip 10).
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8):
        self.mean = np.zeros(shape)
        self.var = np.ones(shape)
        self.count = 1e-4
        self.clip = clip
        self.eps = eps

    def update(self, x: np.ndarray) -> None:
        # x.mean(axis=0) and x.var(axis=0), spelled as the ufunc calls NumPy makes inside
        # them (numpy/_core/_methods.py): the same bits without their Python-level overhead,
        # which dominates for the (num_envs, obs_dim) arrays this sees every env step.
        b_count = x.shape[0]
        if b_count == 1:
            # One row (a single env, every step): its mean is the row and its variance 0,
            # so the general update below reduces to these lines, bit for bit (x / 1, d · 1
            # and m2 + 0 are exact), at half the ufunc calls.
            delta = x[0] - self.mean
            tot = self.count + 1
            self.mean = self.mean + delta / tot
            self.var = (self.var * self.count + delta**2 * self.count / tot) / tot
            self.count = tot
            return
        b_mean = np.add.reduce(x, axis=0) / b_count
        dev = x - b_mean
        b_var = np.add.reduce(np.square(dev, out=dev), axis=0) / b_count
        delta = b_mean - self.mean
        tot = self.count + b_count
        self.mean = self.mean + delta * b_count / tot
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / tot
        self.var = m2 / tot
        self.count = tot

    def normalize(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / np.sqrt(self.var + self.eps)
        # np.clip(z, -clip, clip) in place, without np.clip's Python wrapper (same bits).
        return np.minimum(np.maximum(z, -self.clip, out=z), self.clip, out=z)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.mean, self.var, self.count = d["mean"].copy(), d["var"].copy(), d["count"]


class RewardScaler:
    """Divides rewards by the running std of the discounted return (sb3's VecNormalize,
    Engstrom et al. 2020, "Implementation Matters", Sec. 3). Clipped to [-clip, clip].

    Only the learner sees scaled rewards; logged episode returns stay raw.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        self.ret = np.zeros(num_envs)
        self.rms = RunningMeanStd(())
        self.gamma, self.clip, self.eps = gamma, clip, eps

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + reward
        self.rms.update(self.ret)
        self.ret[done] = 0.0
        z = reward / np.sqrt(self.rms.var + self.eps)
        return np.minimum(np.maximum(z, -self.clip, out=z), self.clip, out=z)  # np.clip, same bits

    def state_dict(self) -> dict[str, Any]:
        return {"ret": self.ret.copy(), "rms": self.rms.state_dict()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.ret = d["ret"].copy()
        self.rms.load_state_dict(d["rms"])


class IdentityNormalizer(RunningMeanStd):
    """Stand-in when observation normalization is off."""

    def update(self, x: np.ndarray) -> None:
        pass

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return x


def action_bounds(space) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(low, high) in float64 for a Box action space, (None, None) otherwise."""
    if isinstance(space, gym.spaces.Box):
        return space.low.astype(np.float64), space.high.astype(np.float64)
    return None, None
