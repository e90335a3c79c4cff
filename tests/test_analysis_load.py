"""analysis.load: run stores of every shape, uneven runs, and the W&B cache."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import summary
from analysis.load import META_COLUMNS, fetch_wandb, load_runs, load_store, load_wandb
from analysis.synthetic import write_grid, write_synthetic_store

UPDATES = 10


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("runs"), updates=UPDATES)


def test_parent_grid_and_run_directories_all_load(store_root):
    everything = load_store(store_root)
    assert sorted(everything.grid_names) == ["cg", "delta", "main"]
    assert len(everything.runs) == 18 + 35 + 6  # delta: one run in grid.json never started
    main = load_store(store_root / "main")
    assert main.grid_names == ["main"] and len(main.runs) == 18
    assert main.grids["main"]["source"] == "experiments/main.yaml"
    one = load_store(store_root / "main" / "trpo-Hopper-v5-s0")
    assert one.runs["run_id"].tolist() == ["trpo-Hopper-v5-s0"]
    assert len(one.metrics) == UPDATES and one.grids["main"]["name"] == "main"
    both = load_runs([store_root / "main", store_root / "cg"])
    assert set(both["grid"]) == {"main", "cg"}


def test_tidy_frame_has_meta_axes_and_metrics_per_update(store_root):
    store = load_store(store_root / "delta")
    df = store.metrics
    assert list(df.columns[: len(META_COLUMNS)]) == list(META_COLUMNS)
    assert {"max_kl", "cg_iters", "rollout/ep_return_mean", "policy/kl", "env_steps"} <= set(df.columns)
    assert store.axes == ("max_kl",)
    # one row per run x update; the failed run stopped at 40% of its updates
    sizes = df.groupby("run_id").size()
    assert sizes["npg-CartPole-v1-max_kl=0.03-s0"] == int(0.4 * UPDATES)
    assert (sizes.drop("npg-CartPole-v1-max_kl=0.03-s0") == UPDATES).all()
    # the axis value comes from config.json, per row
    row = df[df["run_id"] == "trpo-Hopper-v5-max_kl=0.003-s1"].iloc[0]
    assert (row["algo"], row["env_id"], row["seed"], row["max_kl"]) == ("trpo", "Hopper-v5", 1, 0.003)


def test_nan_rows_are_kept(store_root):
    df = load_store(store_root / "main").metrics
    raw = pd.read_csv(store_root / "main" / "trpo-Hopper-v5-s0" / "metrics.csv")
    mine = df[df["run_id"] == "trpo-Hopper-v5-s0"]
    assert len(mine) == len(raw)
    assert mine["rollout/ep_return_mean"].isna().sum() == raw["rollout/ep_return_mean"].isna().sum()
    assert mine["policy/backtracks"].notna().all()
    assert df.loc[df["algo"] == "pg", "policy/cg_iters"].isna().all()  # not applicable, never 0


def test_failed_and_unfinished_runs_are_in_the_runs_table(store_root):
    runs = load_store(store_root / "main").runs.set_index("run_id")
    failed = runs.loc["pg-CartPole-v1-s1"]
    assert (failed["state"], bool(failed["has_metrics"]), bool(failed["finished"])) == ("failed", False, False)
    early = runs.loc["trpo-Hopper-v5-s2"]
    assert early["state"] == "running" and not early["finished"] and early["env_steps"] < early["total_steps"]
    assert runs["finished"].sum() == 16
    bad = summary.unfinished_runs(runs.reset_index())
    assert set(bad["run_id"]) == {"pg-CartPole-v1-s1", "trpo-Hopper-v5-s2"}


def test_partial_last_line_missing_status_and_empty_csv_do_not_crash(tmp_path):
    grid = write_grid(tmp_path, "g", {"algo": ["trpo"], "env_id": ["Hopper-v5"]}, [0, 1, 2], updates=5,
                      rng=np.random.default_rng(0))
    with open(grid / "trpo-Hopper-v5-s0" / "metrics.csv", "a") as f:
        f.write("12000,6,1.")  # a row being appended while we read
    (grid / "trpo-Hopper-v5-s1" / "status.json").unlink()
    (grid / "trpo-Hopper-v5-s2" / "metrics.csv").write_text("")
    store = load_store(grid)
    runs = store.runs.set_index("run_id")
    assert runs.loc["trpo-Hopper-v5-s1", "state"] == "unknown"
    assert not runs.loc["trpo-Hopper-v5-s1", "finished"]
    assert not runs.loc["trpo-Hopper-v5-s2", "has_metrics"]
    assert len(store.metrics[store.metrics["run_id"] == "trpo-Hopper-v5-s0"]) == 5  # the cut line is dropped
    assert load_store(tmp_path / "does-not-exist").runs.empty


# --- W&B --------------------------------------------------------------------------


class FakeRun:
    def __init__(self, api, run_id, state, config, rows):
        self.api, self.id, self.name, self.state = api, run_id, config.get("run_id", run_id), state
        self.group, self.config, self._rows = config.get("grid"), config, rows

    def scan_history(self, keys=None, page_size=1000, min_step=0, max_step=None):
        self.api.calls["scan_history"] += 1
        return iter([{**r, "_step": i, "_runtime": 1.0} for i, r in enumerate(self._rows)])

    def history(self, *args, **kwargs):
        raise AssertionError("history() samples rows; the loader must use scan_history()")


class FakeApi:
    """Stands in for wandb.Api(): two runs, one finished and one still running."""

    def __init__(self):
        self.calls = {"runs": 0, "scan_history": 0}
        rows = [{"env_steps": 1000 * (i + 1), "update": i + 1, "rollout/ep_return_mean": float(i),
                 "policy/kl": 0.01} for i in range(1200)]  # more than history()'s 500-row sample
        rows[3]["rollout/ep_return_mean"] = None
        # a config.json-shaped record, and the flat one trpo_bench's logger sends
        nested = {"run_id": "trpo-s0", "grid": "wb", "algo": "trpo", "env_id": "Hopper-v5", "seed": 0,
                  "total_steps": 1_200_000, "axes": {"algo": "trpo", "env_id": "Hopper-v5", "max_kl": 0.01},
                  "config": {"max_kl": 0.01, "cg_iters": 10}}
        flat = {"run_id": "trpo-s1", "grid": "wb", "algo": "trpo", "env_id": "Hopper-v5", "seed": 1,
                "total_steps": 1_200_000, "max_kl": 0.01, "cg_iters": 10, "hidden_sizes": [64, 64],
                "axis/algo": "trpo", "axis/env_id": "Hopper-v5", "axis/max_kl": 0.01}
        self._runs = [FakeRun(self, "a1", "finished", nested, rows), FakeRun(self, "b2", "running", flat, rows[:600])]

    def runs(self, path=None, filters=None, **kwargs):
        self.calls["runs"] += 1
        assert path == "me/trpo-bench"
        return list(self._runs)


def test_wandb_loader_reads_full_history_and_second_load_is_served_from_cache(tmp_path):
    api = FakeApi()
    df = load_wandb("me/trpo-bench", api=api, cache_dir=tmp_path)
    assert api.calls == {"runs": 1, "scan_history": 2}
    assert len(df) == 1200 + 600
    assert set(df["run_id"]) == {"trpo-s0", "trpo-s1"} and set(df["grid"]) == {"wb"}
    assert df["max_kl"].eq(0.01).all()
    assert df["rollout/ep_return_mean"].isna().sum() == 2
    assert "_step" not in df.columns

    again = load_wandb("me/trpo-bench", api=api, cache_dir=tmp_path)
    assert api.calls == {"runs": 1, "scan_history": 2}  # no network on the second load
    pd.testing.assert_frame_equal(again, df)

    store = load_store(fetch_wandb("me/trpo-bench", api=api, cache_dir=tmp_path))
    runs = store.runs.set_index("run_id")
    assert bool(runs.loc["trpo-s0", "finished"]) and runs.loc["trpo-s1", "state"] == "running"
    assert store.axes == ("max_kl",) and runs["cg_iters"].eq(10).all()


def test_wandb_refresh_rescans_only_unfinished_runs(tmp_path):
    api = FakeApi()
    root = fetch_wandb("me/trpo-bench", api=api, cache_dir=tmp_path)
    fetch_wandb("me/trpo-bench", api=api, cache_dir=tmp_path, refresh=True)
    assert api.calls == {"runs": 2, "scan_history": 3}
    index = json.loads((root / "index.json").read_text())
    assert {e["run_id"]: e["state"] for e in index["runs"]} == {"trpo-s0": "done", "trpo-s1": "running"}
    # different filters -> a different cache entry
    fetch_wandb("me/trpo-bench", api=api, cache_dir=tmp_path, filters={"config.seed": 0})
    assert api.calls["runs"] == 3


def test_final_scores_use_the_last_tenth_of_updates(tmp_path):
    grid = write_grid(tmp_path, "g", {"algo": ["trpo"], "env_id": ["Hopper-v5"]}, [0, 1], updates=20,
                      rng=np.random.default_rng(0))
    path = grid / "trpo-Hopper-v5-s0" / "metrics.csv"
    metrics = pd.read_csv(path)
    metrics["rollout/ep_return_mean"] = np.arange(1.0, 21.0)
    metrics.loc[19, "rollout/ep_return_mean"] = np.nan  # no episode finished in the last update
    metrics.to_csv(path, index=False)
    final = summary.final_scores(load_store(grid)).set_index("run_id")
    assert final.loc["trpo-Hopper-v5-s0", "final"] == pytest.approx(19.0)  # last 2 of 20 updates: 19, NaN


def test_a_run_stored_before_a_setting_existed_is_the_same_method(tmp_path):
    """Runs of one grid written before and after a setting was added (one config.json without
    it) load with its default for both, so they are one method, not two; an eval.json older
    than the run's last update is not its final policy's."""
    root = write_synthetic_store(tmp_path, updates=UPDATES)
    grid = root / "main"
    runs = sorted(p for p in grid.iterdir() if (p / "config.json").is_file())
    before = load_store(grid)
    old = runs[0] / "config.json"
    config = json.loads(old.read_text())
    config["config"].pop("eval_deterministic", None)
    config["config"].pop("vf_lr")  # a setting every run has: absent, it stands for its default
    old.write_text(json.dumps(config))
    after = load_store(grid)
    assert after.runs["eval_deterministic"].tolist() == [True] * len(after.runs)
    settings = summary.method_settings(after.runs, after.axes)
    assert settings == summary.method_settings(before.runs, before.axes)
    assert sorted(summary.with_methods(after.runs, settings)["method"].unique()) == \
        sorted(summary.with_methods(before.runs, settings)["method"].unique())

    status = json.loads((runs[1] / "status.json").read_text())
    for update, expected in ((status["updates"], 123.0), (status["updates"] - 1, None)):
        (runs[1] / "eval.json").write_text(json.dumps({"return_mean": 123.0, "episodes": 5, "update": update}))
        row = load_store(grid).runs.set_index("run_id").loc[runs[1].name]
        assert (row["eval_return"] == expected) if expected else np.isnan(row["eval_return"])
