"""Deterministic evaluation of a finished run's final policy: ``trpo-bench evaluate``.

Training curves report the return of the stochastic policy while it learns. Published
results are often something else: rl-baselines3-zoo, behind sb3-contrib's TRPO figures,
evaluates the mean action of the final policy (``is_deterministic: true`` in its
results.json). This module measures the same thing for our runs, from the final checkpoint,
so the two can be compared:

```
runs/<grid>/<run_id>/eval.json   episodes' returns and lengths of the deterministic policy, and
                                 the reward terms the task reports (MuJoCo: forward, ctrl, ...)
```

The evaluation env is seeded from the run's seed (``seed + EVAL_SEED_OFFSET``), so a repeated
evaluation gives the same numbers; it never touches the run's own files other than eval.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from trpo_bench.config import ConfigError, build_config
from trpo_bench.envs import VecEnv, action_bounds
from trpo_bench.store import EVAL, RunStore, read_json, write_json

EVAL_SEED_OFFSET = 2_000_003  # away from the training seed and from periodic evaluations' seeds


class RewardTerms(gym.Wrapper):
    """Passes every call through and sums, per episode, the ``reward_*`` terms the task reports
    in its step infos. On gymnasium's locomotion tasks (Hopper, HalfCheetah, Walker2d, Ant,
    Swimmer, Humanoid) these are ``reward_forward``, ``reward_ctrl``, ``reward_contact`` and
    ``reward_survive``, and they add up to the reward; other tasks report other terms, or terms
    without the prefix, or none. ``episodes`` holds one dict per finished episode, in order."""

    PREFIX = "reward_"

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.episodes: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}

    def reset(self, **kwargs):
        self._sums = {}
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        for key, value in info.items():
            if key.startswith(self.PREFIX) and np.ndim(value) == 0:
                self._sums[key] = self._sums.get(key, 0.0) + float(value)
        if terminated or truncated:
            self.episodes.append(self._sums)
            self._sums = {}
        return obs, reward, terminated, truncated, info


def mean_terms(episodes: list[dict[str, float]]) -> dict[str, float]:
    """Each term's per-episode sum averaged over ``episodes``: the terms every episode reported."""
    if not episodes:
        return {}
    names = sorted(set.intersection(*(set(e) for e in episodes)))
    return {name: float(np.mean([e[name] for e in episodes])) for name in names}


def run_episodes(agent, venv: VecEnv, episodes: int,
                 rng: np.random.Generator | None = None) -> tuple[list[float], list[int]]:
    """Returns and lengths of the first ``episodes`` episodes on a freshly reset one-env
    ``venv``, raw rewards. Without ``rng`` the policy is deterministic (mean action clipped to the
    action bounds; most likely action for discrete spaces); with it, actions are sampled from
    the policy with ``rng`` as in training, clipped the same way."""
    low, high = action_bounds(venv.action_space)
    returns: list[float] = []
    lengths: list[int] = []
    while len(returns) < episodes:
        obs = agent.obs_rms.normalize(venv.obs)
        a = agent.actor.mode(obs) if rng is None else agent.actor.sample(obs, rng)
        res = venv.step(np.clip(a, low, high) if low is not None else a)
        returns += res.episode_returns
        lengths += res.episode_lengths
    return returns[:episodes], lengths[:episodes]


def evaluate_policy(agent, env_id: str, episodes: int, seed: int,
                    deterministic: bool = True) -> tuple[list[float], list[int]]:
    """``run_episodes`` on a new one-env VecEnv seeded with ``seed``; a sampling policy draws
    from its own generator, seeded with ``seed`` too, never from the run's."""
    venv = VecEnv(env_id, 1, seed)
    try:
        venv.reset()
        return run_episodes(agent, venv, episodes, None if deterministic else np.random.default_rng(seed))
    finally:
        venv.close()


def evaluate_run(run_dir: str | Path, episodes: int = 10, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Evaluate a finished run's final checkpoint and write ``eval.json`` beside it."""
    from trpo_bench.train import Agent, set_threads

    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    status = store.read_status() or {}
    if status.get("state") != "done":
        raise ConfigError([f"{run_dir}: the run is {status.get('state', 'not started')}, not done; "
                           "only a finished run's final policy is evaluated"])
    saved = store.read_config()
    cfg, problems = build_config(store.read_settings())
    if problems:
        raise ConfigError(problems, str(run_dir / "config.json"))
    checkpoint = store.load_checkpoint(trust=trust_checkpoint)
    if checkpoint is None:
        raise ConfigError([f"{run_dir}: no checkpoint.pt (an exported copy holds none); "
                           "evaluate the original run store"])
    set_threads(cfg.torch_threads)
    seed = cfg.seed + EVAL_SEED_OFFSET
    venv = VecEnv(cfg.env_id, 1, seed, wrap=RewardTerms)
    try:
        venv.reset()
        agent = Agent(cfg, venv)  # reads the spaces only
        agent.load_state_dict(checkpoint["agent"])
        returns, lengths = run_episodes(agent, venv, episodes)
        (terms,) = venv.envs
    finally:
        venv.close()
    record = {
        "run_id": saved.get("run_id"), "deterministic": True, "episodes": episodes, "seed": seed,
        "update": checkpoint["update"], "env_steps": checkpoint["env_steps"],
        "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
        "returns": [float(r) for r in returns], "lengths": [int(n) for n in lengths],
        "reward_terms": mean_terms(terms.episodes[:episodes]),
    }
    write_json(run_dir / EVAL, record)
    return record


def is_current(run_dir: Path, episodes: int) -> bool:
    """eval.json exists for this many episodes and for the run's last update, with the reward
    terms (an evaluation written before they were recorded is redone: the same returns)."""
    path = run_dir / EVAL
    if not path.is_file():
        return False
    record, status = read_json(path), RunStore(run_dir).read_status() or {}
    return (record.get("episodes") == episodes and record.get("update") == status.get("updates")
            and "reward_terms" in record)
