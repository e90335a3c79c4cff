"""Synthetic run stores with known structure, for tests and figure previews.

``write_synthetic_store(root)`` writes three grids in the run-store layout:

- ``main``: algo {trpo, npg, pg} x env {Hopper-v5, CartPole-v1} x seeds {0, 1, 2}.
  trpo/Hopper seed 2 stopped at 60% of its steps (state "running"); pg/CartPole
  seed 1 failed before its first update (no metrics.csv); about 5% of rows
  have no finished episode (NaN return).
- ``delta``: algo {trpo, npg} x env {Hopper-v5, CartPole-v1} x max_kl
  {0.003, 0.01, 0.03} x seeds {0, 1, 2}. npg/CartPole/max_kl=0.03 seed 0 failed
  at 40% (state "failed", error text); trpo/Hopper/max_kl=0.03 seed 2 is in
  grid.json but was never started (no run directory).
- ``cg``: algo {trpo} x env {Hopper-v5} x cg_iters {1, 3, 10} x seeds {0, 1}.

Returns follow saturating curves whose final level depends on the algorithm,
max_kl and cg_iters, so the expected orderings are known (trpo > npg > pg).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trpo_bench.rundir import METRIC_COLUMNS

_LEVEL = {"trpo": 1.0, "npg": 0.85, "pg": 0.45}
_TASK = {  # (random return, best return, steps per update)
    "Hopper-v5": (16.7, 3000.0, 2000),
    "CartPole-v1": (23.7, 500.0, 1000),
}
_DEFAULTS = {"max_kl": 0.01, "cg_iters": 10, "cg_damping": 0.1, "fvp_fraction": 0.2, "num_envs": 1,
             "gamma": 0.99, "gae_lambda": 0.97, "vf_lr": 1e-3, "pg_lr": 3e-4, "backtrack_coeff": 0.5,
             "max_backtracks": 10}


def run_id_for(axes: Mapping[str, Any], seed: int) -> str:
    parts = [str(axes["algo"]), str(axes["env_id"])]
    parts += [f"{k}={v}" for k, v in axes.items() if k not in ("algo", "env_id")]
    return "-".join(parts) + f"-s{seed}"


def synthetic_metrics(
    axes: Mapping[str, Any], settings: Mapping[str, Any], updates: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Metrics for one run: (updates, len(METRIC_COLUMNS)), NaN where not applicable."""
    algo, env_id = axes["algo"], axes["env_id"]
    random_ret, best, spu = _TASK[env_id]
    delta = float(settings["max_kl"])
    cg_iters = int(settings["cg_iters"])
    level = _LEVEL[algo] * np.exp(-0.5 * np.log10(delta / 0.01) ** 2) * (1 - 0.5 * np.exp(-cg_iters / 2.0))
    level *= float(np.clip(rng.normal(1.0, 0.06), 0.7, 1.2))
    u = np.arange(1, updates + 1)
    steps = u * spu
    progress = 1 - np.exp(-4.0 * u / updates)
    ret = random_ret + (best - random_ret) * level * progress + rng.normal(0, 0.04 * best, updates)
    ret = np.minimum(ret, best)
    ret[rng.random(updates) < 0.05] = np.nan  # no episode finished in that batch
    n = updates
    natural = algo in ("trpo", "npg")
    m: dict[str, np.ndarray] = {c: np.full(n, np.nan) for c in METRIC_COLUMNS}
    collect = rng.gamma(20, 0.05 * spu / 2000, n)
    policy = rng.gamma(20, {"trpo": 0.02, "npg": 0.017, "pg": 0.004}[algo] * (1 + cg_iters / 10), n)
    value = rng.gamma(20, 0.006, n)
    wall = np.cumsum(collect + policy + value + 0.02)
    m.update({
        "env_steps": steps.astype(float), "update": u.astype(float), "time/wall": wall,
        "time/sps": spu / (collect + policy + value + 0.02), "time/collect": collect,
        "time/policy_update": policy, "time/value_fit": value,
        "rollout/ep_return_mean": ret, "rollout/ep_return_std": np.abs(rng.normal(0.1 * best, 20, n)),
        "rollout/ep_len_mean": np.clip(ret / best * 1000, 10, 1000),
        "rollout/episodes": np.where(np.isnan(ret), 0, 4.0),
        "policy/entropy": np.linspace(1.4, 0.6, n) + rng.normal(0, 0.02, n),
        "value/loss": np.exp(rng.normal(2, 0.5, n)), "value/explained_variance": np.clip(progress - 0.1, -1, 1),
        "policy/grad_norm": np.exp(rng.normal(-1, 0.3, n)),
    })
    expected = np.exp(rng.normal(np.log(0.3 * np.sqrt(delta)), 0.3, n))
    if natural:
        sHs = np.exp(rng.normal(0, 0.5, n))
        beta = np.sqrt(2 * delta / sHs)
        m.update({"policy/cg_iters": np.full(n, float(cg_iters)),
                  "policy/cg_residual": np.exp(rng.normal(np.log(10 ** (-cg_iters / 3.0)), 0.4, n)),
                  "policy/sHs": sHs, "policy/step_size": beta,
                  "policy/natural_grad_norm": np.exp(rng.normal(0, 0.3, n))})
    if algo == "trpo":
        # Larger delta -> the quadratic model is trusted further -> more backtracking.
        p_back = np.clip(0.15 + 0.6 * np.log10(delta / 0.001) / 2, 0.05, 0.9)
        backtracks = np.where(rng.random(n) < p_back, rng.geometric(0.6, n), 0).astype(float)
        accepted = (backtracks < 10).astype(float)
        fraction = np.where(accepted == 1, 0.5 ** backtracks, 0.0)
        kl = delta * fraction**2 * rng.uniform(0.5, 1.0, n) * np.where(accepted == 1, 1, 0)
        ratio = rng.normal(0.85, 0.15, n)
        m.update({"policy/backtracks": backtracks, "policy/accepted": accepted, "policy/step_fraction": fraction})
    elif algo == "npg":
        kl = delta * np.exp(rng.normal(0.2, 0.5, n))
        ratio = rng.normal(0.6, 0.5, n)
        fraction = np.ones(n)
        m.update({"policy/accepted": np.ones(n), "policy/step_fraction": fraction})
    else:
        kl = np.exp(rng.normal(np.log(0.004), 0.6, n))
        ratio = rng.normal(0.9, 0.2, n)
        fraction = np.ones(n)
        m.update({"policy/step_size": np.full(n, float(settings["pg_lr"])), "policy/accepted": np.ones(n)})
    m.update({"policy/kl": kl, "policy/kl_max": kl * rng.uniform(2, 5, n),
              "policy/surrogate_expected": expected * fraction, "policy/surrogate_actual": expected * fraction * ratio,
              "policy/improvement_ratio": ratio, "policy/step_norm": np.sqrt(delta) * fraction * 10})
    return pd.DataFrame(m, columns=list(METRIC_COLUMNS))


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def write_grid(
    root: Path,
    name: str,
    axes: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    *,
    updates: int = 40,
    stopped_early: Mapping[str, float] | None = None,
    failed: Mapping[str, float] | None = None,
    never_started: Sequence[str] = (),  # listed in grid.json, no run directory
    rng: np.random.Generator,
) -> Path:
    """Write grid ``name`` under ``root``; returns the grid directory.

    stopped_early / failed: run_id -> fraction of updates written before the run
    stopped (state "running") or crashed (state "failed"; 0 means no metrics.csv).
    """
    grid_dir = Path(root) / name
    stopped_early, failed = dict(stopped_early or {}), dict(failed or {})
    run_ids = []
    keys = list(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        run_axes = dict(zip(keys, values))
        for seed in seeds:
            run_id = run_id_for(run_axes, seed)
            run_ids.append(run_id)
            if run_id in never_started:
                continue
            settings = {**_DEFAULTS, "steps_per_update": _TASK[run_axes["env_id"]][2]}
            settings.update({k: v for k, v in run_axes.items() if k not in ("algo", "env_id")})
            total = updates * settings["steps_per_update"]
            config = {"run_id": run_id, "grid": name, "algo": run_axes["algo"], "env_id": run_axes["env_id"],
                      "seed": seed, "total_steps": total, "axes": run_axes, "config": settings,
                      "versions": {"python": "3.11"}, "git_commit": None}
            run_dir = grid_dir / run_id
            _write_json(run_dir / "config.json", config)
            metrics = synthetic_metrics(run_axes, settings, updates, rng)
            state, error = "done", None
            if run_id in stopped_early:
                metrics = metrics.iloc[: int(stopped_early[run_id] * updates)]
                state = "running"
            if run_id in failed:
                metrics = metrics.iloc[: int(failed[run_id] * updates)]
                state, error = "failed", "FloatingPointError: NaN in policy parameters"
            if len(metrics):
                metrics.to_csv(run_dir / "metrics.csv", index=False)
            env_steps = int(metrics["env_steps"].iloc[-1]) if len(metrics) else 0
            _write_json(run_dir / "status.json", {"state": state, "env_steps": env_steps, "total_steps": total,
                                                  "updates": len(metrics), "error": error})
    _write_json(grid_dir / "grid.json", {"name": name, "source": f"experiments/{name}.yaml",
                                         "axes": {k: list(v) for k, v in axes.items()}, "seeds": list(seeds),
                                         "runs": run_ids})
    return grid_dir


def write_synthetic_store(root: Path, *, seed: int = 0, updates: int = 40) -> Path:
    """Write the ``main``, ``delta`` and ``cg`` grids under ``root``; returns root."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    envs = ["Hopper-v5", "CartPole-v1"]
    write_grid(root, "main", {"algo": ["trpo", "npg", "pg"], "env_id": envs}, [0, 1, 2], updates=updates,
               stopped_early={"trpo-Hopper-v5-s2": 0.6}, failed={"pg-CartPole-v1-s1": 0.0}, rng=rng)
    write_grid(root, "delta", {"algo": ["trpo", "npg"], "env_id": envs, "max_kl": [0.003, 0.01, 0.03]}, [0, 1, 2],
               updates=updates, failed={"npg-CartPole-v1-max_kl=0.03-s0": 0.4},
               never_started=["trpo-Hopper-v5-max_kl=0.03-s2"], rng=rng)
    write_grid(root, "cg", {"algo": ["trpo"], "env_id": ["Hopper-v5"], "cg_iters": [1, 3, 10]}, [0, 1],
               updates=updates, rng=rng)
    return root
