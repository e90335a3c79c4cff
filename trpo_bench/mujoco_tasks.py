"""gymnasium's MuJoCo v5 tasks at their default arguments, as NumPy over a batch of envs.

Each :class:`Task` restates one ``gymnasium/envs/mujoco/<task>_v5.py``: which MjData arrays
its step reads, its observation, reward, termination and step infos, and its reset noise.
Arrays arrive stacked over envs, ``(N, ...)``; every float operation is the one gymnasium
makes on one env, in the same order, so each row has the bits gymnasium's env would give
(``tests/test_mujoco_batch.py`` steps both side by side). Three spellings carry that:

- sums of squares (control and contact costs) reduce each contiguous row with
  ``np.add.reduce(axis=1)``, which adds in the order of ``np.sum`` on the row alone;
- Euclidean norms are ``sqrt(np.vecdot(x, x))``: ``np.linalg.norm`` of a vector is
  ``sqrt(x.dot(x))``, BLAS's ddot, whose fused multiply-adds ``vecdot`` shares and a
  spelled-out ``x0*x0 + x1*x1`` does not;
- a NumPy float64 scalar's ``x ** 2`` calls C's ``pow``, which differs from ``x * x`` (and
  from ``np.power`` on arrays) in the last bit for about 1 in 1,000 values: ``_pow2``.

The weights and ranges are gymnasium's defaults (the v5 constructors' signatures); other
arguments are not supported here and take the gymnasium path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Consts:
    """What a task reads from the model once: the env's ``dt`` and its initial qpos / qvel."""

    dt: float
    init_qpos: np.ndarray
    init_qvel: np.ndarray
    body: dict[str, int]  # body name -> index into xpos
    body_mass: np.ndarray  # model.body_mass (Humanoid's centre of mass)


@dataclass(frozen=True)
class Task:
    """One v5 task. ``fields``: MjData arrays copied out after each step (and reset), beside
    ``f["qpos"]`` and ``f["qvel"]``, which are views into ``f["state"]``, gymnasium's
    ``state_vector()`` (N, nq + nv); ``position(f)``: what the next step's reward needs from
    before it (x, or x and y); ``observe(f, c)`` -> (N, obs_dim); ``outcome(c, before, f,
    actions)`` -> (reward, terminated, infos); ``reset_state(rng, c)`` -> (qpos, qvel) of one env.
    ``post_constraint``: the task reads ``cfrc_ext``, which ``mj_rnePostConstraint`` computes
    after each step; for the others that call's outputs (``cacc``, ``cfrc_int``, ``cfrc_ext``)
    are read by nothing, the next ``mj_step`` included, so it is skipped."""

    fields: tuple[str, ...]
    position: Callable[[Arrays, Consts], np.ndarray]
    observe: Callable[[Arrays, Consts], np.ndarray]
    outcome: Callable[[Consts, np.ndarray, Arrays, np.ndarray], tuple[np.ndarray, np.ndarray, Arrays]]
    reset_state: Callable[[np.random.Generator, Consts], tuple[np.ndarray, np.ndarray]]
    post_constraint: bool = False


# --------------------------------------------------------------------- helpers
def _sum_sq(x: np.ndarray) -> np.ndarray:
    """Per row ``np.sum(np.square(row))`` of a (N, ...) array, same bits."""
    sq = np.square(x)
    return np.add.reduce(sq.reshape(sq.shape[0], -1), axis=1)


def _norm(x: np.ndarray) -> np.ndarray:
    """Per row ``np.linalg.norm(row)``, same bits (see the module docstring)."""
    return np.sqrt(np.vecdot(x, x))


def _pow2(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` of each element as a NumPy float64 scalar computes it: C's pow."""
    return np.array([math.pow(v, 2.0) for v in x.tolist()])


def _uniform_noise(scale: float) -> Callable[[np.random.Generator, Consts], tuple[np.ndarray, np.ndarray]]:
    """Hopper, Walker2d, Swimmer, InvertedPendulum: U(-scale, scale) on qpos, then on qvel."""
    def reset_state(rng, c):
        qpos = c.init_qpos + rng.uniform(low=-scale, high=scale, size=c.init_qpos.size)
        qvel = c.init_qvel + rng.uniform(low=-scale, high=scale, size=c.init_qvel.size)
        return qpos, qvel
    return reset_state


def _normal_vel_noise(scale: float) -> Callable[[np.random.Generator, Consts], tuple[np.ndarray, np.ndarray]]:
    """HalfCheetah, Ant, InvertedDoublePendulum: U(-scale, scale) on qpos, scale·N(0, 1) on qvel."""
    def reset_state(rng, c):
        qpos = c.init_qpos + rng.uniform(low=-scale, high=scale, size=c.init_qpos.size)
        qvel = c.init_qvel + scale * rng.standard_normal(c.init_qvel.size)
        return qpos, qvel
    return reset_state


def _x(f: Arrays, c: Consts) -> np.ndarray:
    return f["qpos"][:, 0].copy()


def _xy(f: Arrays, c: Consts) -> np.ndarray:
    return f["qpos"][:, 0:2].copy()


def _pos_vel_obs(skip: int, clip_vel: bool) -> Callable[[Arrays, Consts], np.ndarray]:
    """qpos without its first ``skip`` entries, then qvel (clipped to ±10 for Hopper, Walker2d)."""
    def observe(f, c):
        obs = f["state"][:, skip:].copy()
        if clip_vel:  # np.clip(qvel, -10, 10): maximum then minimum, without np.clip's wrapper
            v = obs[:, f["qpos"].shape[1] - skip:]
            np.minimum(np.maximum(v, -10.0, out=v), 10.0, out=v)
        return obs
    return observe


# ------------------------------------------------------ Hopper, Walker2d, HalfCheetah
# Open intervals: -r < x < r is |x| < r for every float, infinities and NaN (false) included.
def _hopper_healthy(f: Arrays) -> np.ndarray:
    # is_healthy: state_vector()[2:] in (-100, 100), z = qpos[1] in (0.7, inf), angle = qpos[2] in (-0.2, 0.2)
    s = f["state"]
    z = s[:, 1]
    ok = np.logical_and.reduce(np.abs(s[:, 2:]) < 100.0, axis=1)
    return ok & (0.7 < z) & (z < float("inf")) & (np.abs(s[:, 2]) < 0.2)


def _walker_healthy(f: Arrays) -> np.ndarray:
    # is_healthy: z = qpos[1] in (0.8, 2.0), angle = qpos[2] in (-1, 1)
    z = f["qpos"][:, 1]
    return (0.8 < z) & (z < 2.0) & (np.abs(f["qpos"][:, 2]) < 1.0)


def _hopping(healthy_fn: Callable[[Arrays], np.ndarray]):
    """Hopper-v5 and Walker2d-v5: forward_reward_weight 1, healthy_reward 1, ctrl_cost_weight 1e-3."""
    def outcome(c, x_before, f, a):
        q = f["qpos"]
        x_after = q[:, 0]
        x_velocity = (x_after - x_before) / c.dt
        forward_reward = 1.0 * x_velocity
        healthy = healthy_fn(f)
        healthy_reward = healthy * 1.0
        rewards = forward_reward + healthy_reward
        ctrl_cost = 1e-3 * _sum_sq(a)
        reward = rewards - ctrl_cost
        infos = {"x_position": x_after.copy(), "z_distance_from_origin": q[:, 1] - c.init_qpos[1],
                 "x_velocity": x_velocity, "reward_forward": forward_reward, "reward_ctrl": -ctrl_cost,
                 "reward_survive": healthy_reward}
        return reward, ~healthy, infos
    return outcome


def _cheetah_outcome(c, x_before, f, a):
    # forward_reward_weight 1, ctrl_cost_weight 0.1; never terminates
    x_after = f["qpos"][:, 0]
    x_velocity = (x_after - x_before) / c.dt
    forward_reward = 1.0 * x_velocity
    ctrl_cost = 0.1 * _sum_sq(a)
    reward = forward_reward - ctrl_cost
    infos = {"x_position": x_after.copy(), "x_velocity": x_velocity, "reward_forward": forward_reward,
             "reward_ctrl": -ctrl_cost}
    return reward, np.zeros(len(reward), dtype=bool), infos


# ------------------------------------------------------------------ Ant, Swimmer
def _ant_torso_xy(f: Arrays, c: Consts) -> np.ndarray:
    return f["xpos"][:, 1, 0:2].copy()  # main_body 1 (the torso): data.body(1).xpos[:2]


def _ant_observe(f: Arrays, c: Consts) -> np.ndarray:
    contact = np.clip(f["cfrc_ext"], -1.0, 1.0)  # contact_force_range (-1, 1)
    n = contact.shape[0]
    return np.concatenate((f["qpos"][:, 2:], f["qvel"], contact[:, 1:].reshape(n, -1)), axis=1)


def _ant_outcome(c, xy_before, f, a):
    # forward_reward_weight 1, ctrl_cost_weight 0.5, contact_cost_weight 5e-4, healthy_reward 1,
    # healthy_z_range (0.2, 1.0) inclusive, with a finite state
    q = f["qpos"]
    xy_after = f["xpos"][:, 1, 0:2]
    xy_velocity = (xy_after - xy_before) / c.dt
    x_velocity, y_velocity = xy_velocity[:, 0], xy_velocity[:, 1]
    forward_reward = x_velocity * 1
    healthy = np.logical_and.reduce(np.isfinite(f["state"]), axis=1) & (0.2 <= q[:, 2]) & (q[:, 2] <= 1.0)
    healthy_reward = healthy * 1.0
    rewards = forward_reward + healthy_reward
    ctrl_cost = 0.5 * _sum_sq(a)
    contact_cost = 5e-4 * _sum_sq(np.clip(f["cfrc_ext"], -1.0, 1.0))
    costs = ctrl_cost + contact_cost
    reward = rewards - costs
    infos = {"x_position": q[:, 0].copy(), "y_position": q[:, 1].copy(),
             "distance_from_origin": _norm(np.ascontiguousarray(q[:, 0:2])), "x_velocity": x_velocity,
             "y_velocity": y_velocity, "reward_forward": forward_reward, "reward_ctrl": -ctrl_cost,
             "reward_contact": -contact_cost, "reward_survive": healthy_reward}
    return reward, ~healthy, infos


def _swimmer_outcome(c, xy_before, f, a):
    # forward_reward_weight 1, ctrl_cost_weight 1e-4; never terminates
    xy_after = f["qpos"][:, 0:2]
    xy_velocity = (xy_after - xy_before) / c.dt
    x_velocity, y_velocity = xy_velocity[:, 0], xy_velocity[:, 1]
    forward_reward = 1.0 * x_velocity
    ctrl_cost = 1e-4 * _sum_sq(a)
    reward = forward_reward - ctrl_cost
    infos = {"x_position": xy_after[:, 0].copy(), "y_position": xy_after[:, 1].copy(),
             "distance_from_origin": _norm(np.ascontiguousarray(xy_after)), "x_velocity": x_velocity,
             "y_velocity": y_velocity, "reward_forward": forward_reward, "reward_ctrl": -ctrl_cost}
    return reward, np.zeros(len(reward), dtype=bool), infos


# -------------------------------------------------------------- the pendulums
def _nothing(f: Arrays, c: Consts) -> np.ndarray:
    return np.zeros((f["qpos"].shape[0], 0))


def _pendulum_outcome(c, _, f, a):
    obs = f["state"]  # the observation: qpos, qvel
    terminated = ~np.logical_and.reduce(np.isfinite(obs), axis=1) | (np.abs(obs[:, 1]) > 0.2)
    reward = (~terminated).astype(np.float64)  # int(not terminated)
    return reward, terminated, {"reward_survive": reward}


def _double_pendulum_observe(f: Arrays, c: Consts) -> np.ndarray:
    q = f["qpos"]
    return np.concatenate((q[:, :1], np.sin(q[:, 1:]), np.cos(q[:, 1:]), np.clip(f["qvel"], -10, 10),
                           np.clip(f["qfrc_constraint"], -10, 10)[:, :1]), axis=1)


def _double_pendulum_outcome(c, _, f, a):
    # healthy_reward 10; terminated when the tip's height y <= 1
    tip = f["site_xpos"][:, 0]
    x, y = tip[:, 0], tip[:, 2]
    terminated = y <= 1
    v1, v2 = f["qvel"][:, 1], f["qvel"][:, 2]
    dist_penalty = 0.01 * _pow2(x) + _pow2(y - 2)
    vel_penalty = 0.001 * _pow2(v1) + 0.005 * _pow2(v2)
    alive_bonus = 10.0 * (~terminated).astype(np.float64)
    reward = alive_bonus - dist_penalty - vel_penalty
    return reward, terminated, {"reward_survive": alive_bonus, "distance_penalty": -dist_penalty,
                                "velocity_penalty": -vel_penalty}


# ---------------------------------------------------------------------- Reacher
def _reacher_vec(f: Arrays, c: Consts) -> np.ndarray:
    xpos = f["xpos"]
    return xpos[:, c.body["fingertip"]] - xpos[:, c.body["target"]]  # get_body_com(fingertip) - (target)


def _reacher_observe(f: Arrays, c: Consts) -> np.ndarray:
    q = f["qpos"]
    theta = q[:, :2]
    return np.concatenate((np.cos(theta), np.sin(theta), q[:, 2:], f["qvel"][:, :2], _reacher_vec(f, c)[:, :2]),
                          axis=1)


def _reacher_outcome(c, _, f, a):
    # reward_dist_weight 1, reward_control_weight 1; never terminates (50-step time limit)
    reward_dist = -_norm(_reacher_vec(f, c)) * 1
    reward_ctrl = -_sum_sq(a) * 1
    reward = reward_dist + reward_ctrl
    return reward, np.zeros(len(reward), dtype=bool), {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl}


def _reacher_reset(rng: np.random.Generator, c: Consts) -> tuple[np.ndarray, np.ndarray]:
    qpos = rng.uniform(low=-0.1, high=0.1, size=c.init_qpos.size) + c.init_qpos
    while True:  # a goal drawn uniformly in the disc of radius 0.2, by rejection
        goal = rng.uniform(low=-0.2, high=0.2, size=2)
        if np.linalg.norm(goal) < 0.2:
            break
    qpos[-2:] = goal
    qvel = c.init_qvel + rng.uniform(low=-0.005, high=0.005, size=c.init_qvel.size)
    qvel[-2:] = 0
    return qpos, qvel


# --------------------------------------------------------------------- Humanoid
def _mass_centre_xy(f: Arrays, c: Consts) -> np.ndarray:
    # humanoid_v5.mass_center per env: einsum's own summation order, so the same call per row
    total = c.body_mass.sum()
    return np.stack([(np.einsum("b,bj->j", c.body_mass, xipos) / total)[0:2] for xipos in f["xipos"]])


def _humanoid_observe(f: Arrays, c: Consts) -> np.ndarray:
    n = f["qpos"].shape[0]
    return np.concatenate((f["qpos"][:, 2:], f["qvel"], f["cinert"][:, 1:].reshape(n, -1),
                           f["cvel"][:, 1:].reshape(n, -1), f["qfrc_actuator"][:, 6:],
                           f["cfrc_ext"][:, 1:].reshape(n, -1)), axis=1)


def _humanoid_outcome(c, xy_before, f, a):
    # forward_reward_weight 1.25, ctrl_cost_weight 0.1 (on data.ctrl), contact_cost_weight 5e-7
    # clipped to (-inf, 10], healthy_reward 5, healthy_z_range (1, 2) exclusive
    q = f["qpos"]
    xy_velocity = (_mass_centre_xy(f, c) - xy_before) / c.dt
    x_velocity, y_velocity = xy_velocity[:, 0], xy_velocity[:, 1]
    forward_reward = 1.25 * x_velocity
    healthy = (1.0 < q[:, 2]) & (q[:, 2] < 2.0)
    healthy_reward = healthy * 5.0
    rewards = forward_reward + healthy_reward
    ctrl_cost = 0.1 * _sum_sq(f["ctrl"])
    contact_cost = np.clip(5e-7 * _sum_sq(f["cfrc_ext"]), -np.inf, 10.0)
    costs = ctrl_cost + contact_cost
    reward = rewards - costs
    infos = {"x_position": q[:, 0].copy(), "y_position": q[:, 1].copy(), "tendon_length": f["ten_length"].copy(),
             "tendon_velocity": f["ten_velocity"].copy(),
             "distance_from_origin": _norm(np.ascontiguousarray(q[:, 0:2])), "x_velocity": x_velocity,
             "y_velocity": y_velocity, "reward_survive": healthy_reward, "reward_forward": forward_reward,
             "reward_ctrl": -ctrl_cost, "reward_contact": -contact_cost}
    return reward, ~healthy, infos


TASKS: dict[str, Task] = {
    "Hopper-v5": Task((), _x, _pos_vel_obs(1, True), _hopping(_hopper_healthy),
                      _uniform_noise(5e-3)),
    "Walker2d-v5": Task((), _x, _pos_vel_obs(1, True), _hopping(_walker_healthy),
                        _uniform_noise(5e-3)),
    "HalfCheetah-v5": Task((), _x, _pos_vel_obs(1, False), _cheetah_outcome, _normal_vel_noise(0.1)),
    "Ant-v5": Task(("xpos", "cfrc_ext"), _ant_torso_xy, _ant_observe, _ant_outcome, _normal_vel_noise(0.1),
                   post_constraint=True),
    "Swimmer-v5": Task((), _xy, _pos_vel_obs(2, False), _swimmer_outcome, _uniform_noise(0.1)),
    "InvertedPendulum-v5": Task((), _nothing, _pos_vel_obs(0, False), _pendulum_outcome,
                                _uniform_noise(0.01)),
    "InvertedDoublePendulum-v5": Task(("site_xpos", "qfrc_constraint"), _nothing,
                                      _double_pendulum_observe, _double_pendulum_outcome, _normal_vel_noise(0.1)),
    "Reacher-v5": Task(("xpos",), _nothing, _reacher_observe, _reacher_outcome, _reacher_reset),
    "Humanoid-v5": Task(("cinert", "cvel", "qfrc_actuator", "cfrc_ext", "xipos", "ctrl", "ten_length", "ten_velocity"),
                        _mass_centre_xy, _humanoid_observe, _humanoid_outcome, _uniform_noise(0.01),
                        post_constraint=True),
}
