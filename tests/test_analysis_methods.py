"""What a method is: runs that differ in any setting (seed aside) are never pooled."""

from __future__ import annotations

import json
import shutil

import numpy as np

from analysis import summary
from analysis.load import load_store
from analysis.report import write_report
from analysis.synthetic import write_grid

AXES = {"algo": ["trpo"], "env_id": ["CartPole-v1"]}


def _edit_config(run_dir, **config_settings):
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    config["config"].update(config_settings)
    path.write_text(json.dumps(config))


def _final_rows(root):
    store = load_store(root).select_grid("g")
    settings = summary.method_settings(store.runs, store.axes)
    final = summary.with_methods(summary.final_scores(store), settings)
    return settings, summary.final_table(final, reps=200)


def test_runs_differing_only_in_total_steps_are_two_methods(tmp_path, fast_figures):
    short = write_grid(tmp_path / "a", "g", AXES, [0], updates=20, rng=np.random.default_rng(0))
    long = write_grid(tmp_path / "b", "g", AXES, [1], updates=40, rng=np.random.default_rng(1))
    shutil.move(long / "trpo-CartPole-v1-s1", short / "trpo-CartPole-v1-s1")
    settings, table = _final_rows(short)
    assert settings == ["total_steps"]
    assert table["method"].tolist() == ["TRPO, total_steps=20k", "TRPO, total_steps=40k"]
    assert table["n"].tolist() == [1, 1]
    # each group's estimate is its one run's final return, not a pool of the two
    finals = summary.final_scores(load_store(short)).set_index("run_id")["final"]
    assert np.allclose(table["estimate"], [finals["trpo-CartPole-v1-s0"], finals["trpo-CartPole-v1-s1"]])
    report = write_report([short], tmp_path / "out").read_text()
    assert "| TRPO, total_steps=20k | 1 | 1 | total_steps=20k |" in report
    assert "| TRPO, total_steps=40k | 1 | 1 | total_steps=40k |" in report


def test_runs_differing_only_in_a_setting_outside_the_grid_axes_are_kept_apart(tmp_path):
    grid = write_grid(tmp_path, "g", AXES, [0, 1, 2, 3], updates=40, rng=np.random.default_rng(0))
    for seed in (2, 3):
        _edit_config(grid / f"trpo-CartPole-v1-s{seed}", cg_damping=0.01)
    settings, table = _final_rows(tmp_path)
    assert settings == ["cg_damping"]
    assert table["method"].tolist() == ["TRPO, CG damping=0.01", "TRPO, CG damping=0.1"]
    assert table["n_runs"].tolist() == [2, 2]


def test_a_setting_that_changes_only_with_the_task_names_no_method(tmp_path, fast_figures):
    write_grid(tmp_path, "g", {"algo": ["trpo", "npg"], "env_id": ["CartPole-v1", "Hopper-v5"]}, [0, 1],
               updates=10, rng=np.random.default_rng(0))  # steps_per_update differs per task
    settings, table = _final_rows(tmp_path)
    assert settings == []
    assert sorted(table["method"].unique()) == ["NPG", "TRPO"]
    assert (table["n_runs"] == 2).all()
    report = write_report([tmp_path], tmp_path / "out").read_text()
    assert "steps_per_update per task: 1k (CartPole-v1), 2k (Hopper-v5)" in report


def test_a_setting_at_its_default_is_recognised_in_any_stored_form():
    """The reference of an IQM difference is the method at RunConfig's defaults, whatever form the
    store gives a value: a list as the loader writes it, a number as a string or another type."""
    from analysis.results import _is_default

    assert _is_default("64x64", [64, 64]) and _is_default([64, 64], (64, 64))
    assert _is_default("0.01", 0.01) and _is_default(10.0, 10) and _is_default("mean", "mean")
    assert not _is_default("32x32", [64, 64]) and not _is_default(0.011, 0.01) and not _is_default("max", "mean")


def test_an_algorithm_without_runs_at_the_defaults_is_named_not_skipped():
    import types

    import pandas as pd

    from analysis import results

    final = pd.DataFrame({"method": ["TRPO, CG damping=0.3", "TRPO, CG damping=1", "NPG, CG damping=0.3"],
                          "algo": ["trpo", "trpo", "npg"], "cg_damping": [0.3, 1.0, 0.3]})
    res = types.SimpleNamespace(settings=["algo", "cg_damping"], final=final, methods=list(final["method"]))
    assert results.algorithms_without_reference(res) == ["trpo", "npg"]
    assert results.comparison_pairs(res) == [("NPG, CG damping=0.3", "TRPO, CG damping=0.3")]
    with_default = final.assign(cg_damping=[0.1, 1.0, 0.3])
    res = types.SimpleNamespace(settings=["algo", "cg_damping"], final=with_default, methods=list(final["method"]))
    assert results.algorithms_without_reference(res) == ["npg"]
