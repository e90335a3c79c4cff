"""Same seed, same bits: two runs agree on every policy parameter and every logged metric
(bar wall-clock columns) after several updates; another seed gives other numbers."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from trpo_bench.checkpoint import load as load_checkpoint
from trpo_bench.config import RunConfig
from trpo_bench.train import RunOptions, run

CASES = [
    # (env, algo): the Hopper case covers the Gaussian policy, MuJoCo and observation normalization.
    ("CartPole-v1", "trpo"),
    ("CartPole-v1", "pg"),
    ("Hopper-v5", "trpo"),
]


def train(tmp_path: Path, name: str, env_id: str, algo: str, seed: int) -> tuple[dict, list[dict[str, str]]]:
    cfg = RunConfig(algo=algo, env_id=env_id, seed=seed, total_steps=4 * 512, steps_per_update=512, num_envs=4)
    result = run(cfg, RunOptions(out=tmp_path, run_id=name, wandb="disabled", progress=False))
    assert result.state == "done" and result.updates == 4 and result.env_steps == 2048
    checkpoint, _ = load_checkpoint(result.run_dir / "checkpoint.pt")
    with open(result.run_dir / "metrics.csv", newline="") as fh:
        rows = [{k: v for k, v in row.items() if not k.startswith("time/")} for row in csv.DictReader(fh)]
    return checkpoint["agent"]["policy"], rows


@pytest.mark.parametrize("env_id,algo", CASES)
def test_same_seed_same_bits_other_seed_other_numbers(tmp_path, env_id, algo):
    policy_a, rows_a = train(tmp_path, "a", env_id, algo, seed=3)
    policy_b, rows_b = train(tmp_path, "b", env_id, algo, seed=3)
    policy_c, rows_c = train(tmp_path, "c", env_id, algo, seed=4)

    assert len(rows_a) == 4 and [r["update"] for r in rows_a] == ["1", "2", "3", "4"]
    # The rows carry real numbers, so equal rows are a real check.
    for row in rows_a:
        assert float(row["policy/accepted"]) == 1.0
        assert math.isfinite(float(row["policy/kl"])) and float(row["policy/kl"]) > 0.0
        assert math.isfinite(float(row["value/loss"]))

    assert policy_a.keys() == policy_b.keys()
    for name in policy_a:
        assert torch.equal(policy_a[name], policy_b[name]), name
    assert rows_a == rows_b

    assert any(not torch.equal(policy_a[n], policy_c[n]) for n in policy_a)
    assert [r["policy/kl"] for r in rows_a] != [r["policy/kl"] for r in rows_c]
    assert [r["rollout/ep_return_mean"] for r in rows_a] != [r["rollout/ep_return_mean"] for r in rows_c]
