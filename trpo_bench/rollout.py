"""Collecting a batch from a :class:`~trpo_bench.envs.VecEnv`, and GAE.

Truncation (a time limit) and termination (a terminal state) are kept apart: a
truncated episode's last step bootstraps from V(final observation), a terminated
one from 0 (Pardo et al. 2018, "Time Limits in Reinforcement Learning").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from trpo_bench.envs import RewardScaler, RunningMeanStd, VecEnv
from trpo_bench.policies import NumpyActor, ValueNet


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
        truncated: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Generalized advantage estimates (Schulman et al. 2016, Eq. 16). All arrays (T, N).

    ``next_values[t]`` is V(s_{t+1}): of the final observation where step t ended an
    episode by truncation, of the next observation otherwise; ignored where terminated.
    An episode boundary (either kind) stops the backward recursion.
    """
    T, shape = rewards.shape[0], rewards.shape[1:]
    not_term = 1.0 - terminated.astype(np.float64)
    not_done = 1.0 - (terminated | truncated).astype(np.float64)
    # δ and γλ·(1 − done) for every step at once; only A_t = δ_t + γλ(1 − done_t)·A_{t+1}
    # is sequential. It runs per env on Python floats (the same IEEE double operations as
    # NumPy's, so the same bits), which is cheaper than ufunc calls on one-element rows.
    delta = rewards + gamma * next_values * not_term - values
    coef = gamma * lam * not_done
    n = int(np.prod(shape))
    d_cols = delta.reshape(T, n).T.tolist()
    c_cols = coef.reshape(T, n).T.tolist()
    adv = np.empty((n, T))
    for i, (d, c) in enumerate(zip(d_cols, c_cols)):
        col, last = [0.0] * T, 0.0
        for t in range(T - 1, -1, -1):
            last = d[t] + c[t] * last
            col[t] = last
        adv[i] = col
    return adv.T.reshape(T, *shape).copy()


@dataclass
class Batch:
    """One update's data, flattened time-major to B = T·N rows."""

    obs: np.ndarray  # (B, obs_dim), normalized as the policy saw them
    actions: np.ndarray  # (B, A) or (B,)
    advantages: np.ndarray  # (B,)
    returns: np.ndarray  # (B,) advantages + values: the value-fit targets
    values: np.ndarray  # (B,)
    rewards: np.ndarray  # (B,) as the learner saw them (scaled when reward scaling is on)
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)


def collect(venv: VecEnv, actor: NumpyActor, value: ValueNet, obs_rms: RunningMeanStd, steps: int,
            rng: np.random.Generator, gamma: float, lam: float, action_low=None, action_high=None,
            reward_scaler: RewardScaler | None = None, count_first: bool = True, legacy_norm: bool = False) -> Batch:
    """Step ``venv`` for ``steps`` rounds (``steps · num_envs`` transitions) and compute GAE.

    Observations are normalized with running statistics updated as they arrive.
    Gaussian actions are clipped to the action bounds for the env only; the batch keeps
    the sampled action, whose log-probability the update needs. ``reward_scaler``, when
    given, scales the rewards the learner sees (episode returns stay raw).

    ``count_first``: the current observations enter the statistics before the first step; a
    run's first collect only, since every later one starts from the observations the previous
    one counted last. A truncated episode's final observation is normalized with the
    statistics of its step, which also normalize the next observations. ``legacy_norm``
    (``obs_norm_timing: legacy``): trpo-bench <= 0.2, which counted the first observations on
    every collect and normalized final observations with the statistics at the rollout's end.
    """
    n = venv.num_envs
    obs_dim = venv.obs.shape[1]
    obs_buf = np.empty((steps, n, obs_dim))
    act_buf: np.ndarray | None = None  # (steps, n, ...) once the first action shows its shape
    rew = np.empty((steps, n))
    term = np.zeros((steps, n), dtype=bool)
    trunc = np.zeros((steps, n), dtype=bool)
    final_rows: list[tuple[int, int]] = []
    final_obs: list[np.ndarray] = []
    ep_returns: list[float] = []
    ep_lengths: list[int] = []
    clip = action_low is not None

    # The loop runs once per vector step (~250 times per update at the defaults), so it
    # writes into preallocated buffers and clips with two in-place ufuncs, the same bits
    # as np.clip without its Python wrapper.
    if count_first or legacy_norm:
        obs_rms.update(venv.obs)
    obs_n = obs_rms.normalize(venv.obs)
    for t in range(steps):
        obs_buf[t] = obs_n
        act = actor.sample(obs_n, rng)
        if act_buf is None:
            act_buf = np.empty((steps, *act.shape), dtype=act.dtype)
        act_buf[t] = act
        if clip:
            env_act = np.maximum(act, action_low)
            np.minimum(env_act, action_high, out=env_act)
        else:
            env_act = act
        res = venv.step(env_act)
        term[t], trunc[t] = res.terminated, res.truncated
        rew[t] = res.reward if reward_scaler is None else reward_scaler(res.reward, res.terminated | res.truncated)
        ended = []
        if res.final_obs:
            for i, o in res.final_obs.items():
                if res.truncated[i]:
                    final_rows.append((t, i))
                    ended.append(o)
            ep_returns += res.episode_returns
            ep_lengths += res.episode_lengths
        obs_rms.update(res.obs)
        obs_n = obs_rms.normalize(res.obs)
        if ended:
            final_obs += ended if legacy_norm else list(obs_rms.normalize(np.stack(ended)))

    # Values in one batched forward pass: V(s_t) for every step, V(s_T) for the bootstrap,
    # and V(final observation) of truncated episodes.
    with torch.no_grad():
        flat = torch.as_tensor(obs_buf.reshape(steps * n, obs_dim), dtype=torch.float32)
        values = value(flat).double().numpy().reshape(steps, n)
        last_v = value(torch.as_tensor(obs_n, dtype=torch.float32)).double().numpy()
        if final_obs:
            fo = obs_rms.normalize(np.stack(final_obs)) if legacy_norm else np.stack(final_obs)
            final_v = value(torch.as_tensor(fo, dtype=torch.float32)).double().numpy()
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]
    next_values[-1] = last_v
    for k, (t, i) in enumerate(final_rows):
        next_values[t, i] = final_v[k]

    adv = gae(rew, values, next_values, term, trunc, gamma, lam)
    return Batch(
        obs=obs_buf.reshape(steps * n, obs_dim),
        actions=act_buf.reshape(steps * n, *act_buf.shape[2:]),
        advantages=adv.reshape(-1),
        returns=(adv + values).reshape(-1),
        values=values.reshape(-1),
        rewards=rew.reshape(-1),
        episode_returns=ep_returns,
        episode_lengths=ep_lengths,
    )
