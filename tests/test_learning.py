"""Learning on a budget (slow; run with ``python -m pytest -m slow tests/test_learning.py``).

"Reaches R" means: some update's mean training-episode return (``rollout/ep_return_mean``,
episodes that ended in that update's batch) is >= R within the step budget. All runs use
the config defaults (8 envs, 2048 steps per update, δ = 0.01, pg_lr = 3e-3).

Measured on the 2-core dev box (seeds 0, 1, 2), first update reaching 475:
TRPO 26.6k / 34.8k / 28.7k steps; NPG the same (TRPO rarely backtracks at δ = 0.01);
PG 63.5k / 61.4k / 57.3k. The budgets below leave 2-6x margin.
"""

from __future__ import annotations

import csv
import math
import time

import pytest

from trpo_bench.config import RunConfig
from trpo_bench.train import RunOptions, run

pytestmark = pytest.mark.slow

# (algo, budget in env steps, return to reach)
TARGETS = {
    "trpo": (200_000, 475.0),
    "npg": (100_000, 475.0),
    "pg": (150_000, 475.0),
}


def train_cartpole(tmp_path, algo: str, seed: int) -> tuple[list[tuple[int, float]], float]:
    budget, _ = TARGETS[algo]
    cfg = RunConfig(algo=algo, env_id="CartPole-v1", seed=seed, total_steps=budget)
    t0 = time.perf_counter()
    result = run(cfg, RunOptions(out=tmp_path, run_id=f"{algo}-{seed}", wandb="disabled", progress=False))
    wall = time.perf_counter() - t0
    assert result.state == "done" and result.env_steps >= budget
    with open(result.run_dir / "metrics.csv", newline="") as fh:
        curve = [(int(r["env_steps"]), float(r["rollout/ep_return_mean"] or "nan")) for r in csv.DictReader(fh)]
    return curve, wall


@pytest.mark.parametrize("algo", ["trpo", "npg", "pg"])
def test_learns_cartpole(tmp_path, algo):
    """Every seed reaches the target within the budget, and the seeds together stay good.

    "Stay good" is judged on the mean over seeds of each run's last 10 updates: NPG, with no
    line search, now and then ends a run in a dip. Over seeds 0-11 at 100k steps, one NPG
    run in 12 ended below 400 with either value-fit backend (NumPy: seed 1 at 319; autograd:
    seed 6 at 393), so a per-seed bound would test which seeds were picked.
    """
    budget, target = TARGETS[algo]
    tails = []
    for seed in (0, 1, 2):
        curve, wall = train_cartpole(tmp_path, algo, seed)
        first = next((steps for steps, ret in curve if ret >= target), None)
        tail = [ret for _, ret in curve[-10:] if math.isfinite(ret)]
        tails.append(sum(tail) / len(tail))
        print(f"\n{algo} seed {seed}: first >= {target:g} at {first} steps (budget {budget}); "
              f"max {max(r for _, r in curve if math.isfinite(r)):.1f}; "
              f"last-10 mean {tails[-1]:.1f}; wall {wall:.1f}s")
        assert first is not None and first <= budget, f"seed {seed}"
    # ... and it stays good rather than touching the target once.
    assert sum(tails) / len(tails) >= 400.0, tails
