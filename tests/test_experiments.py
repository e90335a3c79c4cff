"""The grid files under experiments/: their stated sizes, and the study's runs at the current defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trpo_bench.config import DEFAULTS
from trpo_bench.grid import load_grid

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
# The reference study (issue 20): 1M steps per run, every setting but the grid's axes at its default.
STUDY = ["ablation_fisher", "ablation_kl_bound", "ablation_fvp_fraction", "ablation_cg_damping",
         "ablation_delta", "ablation_cg_iters", "mujoco"]


# "... = 150 runs of 1M steps." in a file's header comment.
STATED = {p.stem: int(m[1]) for p in sorted(EXPERIMENTS.glob("*.yaml"))
          if (m := re.search(r"= (\d+) runs", p.read_text()))}


def test_study_files_state_their_size():
    assert set(STUDY) <= set(STATED)


@pytest.mark.parametrize("name", sorted(STATED))
def test_a_stated_run_count_is_the_grid_size(name):
    assert len(load_grid(EXPERIMENTS / f"{name}.yaml", check_envs=False).runs) == STATED[name]


@pytest.mark.parametrize("name", STUDY)
def test_study_runs_vary_only_their_axes(name):
    grid = load_grid(EXPERIMENTS / f"{name}.yaml", check_envs=False)
    assert grid.name == name
    free = set(grid.axes) | {"algo", "env_id", "seed", "total_steps"}
    if name == "mujoco":  # evaluation during training, for Tianshou's statistic; it changes no training bit
        free |= {"eval_every", "eval_episodes", "eval_deterministic"}
    for run in grid.runs:
        changed = {k for k, v in run.config.to_dict().items() if v != DEFAULTS.to_dict()[k]}
        assert changed <= free, run.run_id
        assert run.config.total_steps == 1_000_000
        assert run.config.env_id.endswith("-v5")
    assert grid.seeds == list(range(10 if name == "mujoco" else 5))
