"""Several stores in one comparison, an external baseline overlaid, and W&B from the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import compare, load, results
from analysis.synthetic import write_grid
from trpo_bench.cli import main

REPS = 100


@pytest.fixture
def two_stores(tmp_path):
    a = write_grid(tmp_path / "a", "alpha", {"algo": ["trpo"], "env_id": ["CartPole-v1", "Hopper-v5"]}, [0, 1],
                   updates=20, rng=np.random.default_rng(0))
    b = write_grid(tmp_path / "b", "beta", {"algo": ["trpo"], "env_id": ["CartPole-v1"]}, [0, 1, 2], updates=20,
                   rng=np.random.default_rng(1))
    return a, b


def test_two_stores_are_compared_on_the_tasks_they_share_never_pooled(two_stores, tmp_path, fast_figures):
    a, b = two_stores
    paths = compare.run("report", [a, b], tmp_path / "out", reps=REPS)
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    final = table[(table["measure"] == "final_return") & (table["statistic"] == "mean")]
    comparison = final[final["grid"] == "comparison"]
    assert sorted(comparison["group"]) == ["TRPO [alpha]", "TRPO [beta]"]
    assert set(comparison["task"]) == {"CartPole-v1"}  # Hopper is in one store only
    assert comparison.set_index("group")["n_runs"].to_dict() == {"TRPO [alpha]": 2, "TRPO [beta]": 3}
    # each store's own grid is still reported as it is
    assert set(final["grid"]) == {"alpha", "beta", "comparison"}
    md = paths[-1].read_text()
    assert "## Grid `comparison`" in md and "| task | TRPO [alpha] | TRPO [beta] |" in md
    assert (tmp_path / "out" / "comparison" / "curves.png").is_file()


def test_one_grid_name_in_two_stores_stays_two_grids(tmp_path, fast_figures):
    for name, seeds in (("a", [0, 1]), ("b", [0, 1, 2])):
        write_grid(tmp_path / name, "same", {"algo": ["trpo"], "env_id": ["CartPole-v1"]}, seeds, updates=20,
                   rng=np.random.default_rng(len(seeds)))
    store = compare.load_all([tmp_path / "a", tmp_path / "b"])
    assert store.grid_names == ["comparison", "same [a]", "same [b]"]
    assert store.select_grid("same [b]").runs["seed"].tolist() == [0, 1, 2]
    md = compare.run("report", [tmp_path / "a", tmp_path / "b"], tmp_path / "out", reps=REPS)[-1].read_text()
    assert "](same_b/curves.png)" in md and (tmp_path / "out" / "same_b" / "curves.png").is_file()
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    final = table[(table["measure"] == "final_return") & (table["statistic"] == "mean")]
    assert final.set_index(["grid", "group"])["n_runs"].to_dict() == {
        ("same [a]", "TRPO"): 2, ("same [b]", "TRPO"): 3, ("comparison", "TRPO [a]"): 2, ("comparison", "TRPO [b]"): 3}


def _baseline(tmp_path, rows=None):
    rows = rows if rows is not None else [
        {"method": "sb3-trpo", "task": "CartPole-v1", "seed": seed, "env_steps": 1000 * (i + 1),
         "return": 100.0 * seed + i} for seed in (0, 1) for i in range(20)]
    path = tmp_path / "zoo.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_external_baseline_is_overlaid_and_labelled_external(two_stores, tmp_path):
    a, _ = two_stores
    csv = _baseline(tmp_path)
    store = compare.load_all([a], [csv])
    res = results.compute(store.select_grid("comparison"), reps=REPS, grid="comparison")
    assert res.settings == ["store"]  # the baseline's missing settings do not split our runs
    assert res.methods == ["TRPO [alpha]", "sb3-trpo [external: zoo.csv]"]
    row = res.rows("final_return", statistic="mean", group="sb3-trpo [external: zoo.csv]").iloc[0]
    # last 10% of 20 points per seed: (18 + 19) / 2 and (118 + 119) / 2, then the mean over the two seeds
    assert row["estimate"] == pytest.approx((18.5 + 118.5) / 2) and row["n"] == 2
    from analysis import plots

    figs = {s.name: s.figure for s in plots.build_figures(res)}
    labels = {t.get_text() for leg in figs["curves"].legends for t in leg.get_texts()}
    assert {"TRPO [alpha]", "sb3-trpo [external: zoo.csv]"} <= labels


def test_bad_baseline_file_exits_2_naming_file_and_column(two_stores, tmp_path, capsys):
    a, _ = two_stores
    csv = _baseline(tmp_path, [{"method": "x", "task": "CartPole-v1", "seed": 0, "steps": 1, "return": 1.0}])
    out = tmp_path / "out"
    assert main(["plot", str(a), "--baseline", str(csv), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "zoo.csv: missing column env_steps" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no such directory" in capsys.readouterr().err and not out.exists()


class FakeRun:
    def __init__(self, run_id, seed):
        self.id, self.name, self.state, self.group = run_id, run_id, "finished", "wb"
        self.config = {"run_id": run_id, "grid": "wb", "algo": "trpo", "env_id": "CartPole-v1", "seed": seed,
                       "total_steps": 20_000, "max_kl": 0.01}

    def scan_history(self, **kwargs):
        return iter([{"env_steps": 1000 * (i + 1), "update": i + 1,
                      "rollout/ep_return_mean": 10.0 * i + self.config["seed"]}
                     for i in range(20)])


class FakeApi:
    def __init__(self):
        self.calls = []

    def runs(self, path=None, filters=None, **kwargs):
        self.calls.append((path, filters))
        return [FakeRun("trpo-s0", 0), FakeRun("trpo-s1", 1)]


def test_wandb_source_from_the_command_line_through_the_cache(tmp_path, monkeypatch, capsys, fast_figures):
    api = FakeApi()
    monkeypatch.setattr(load, "_default_api", lambda: api)
    monkeypatch.setattr(load, "DEFAULT_WANDB_CACHE", tmp_path / "cache")
    out = tmp_path / "out"
    assert main(["report", "wandb:me/proj/wb", "--out", str(out)]) == 0
    assert api.calls == [("me/proj", {"group": "wb"})]
    table = pd.read_csv(out / "results.csv")
    row = table[(table["measure"] == "final_return") & (table["statistic"] == "mean")].iloc[0]
    assert (row["group"], row["task"], row["n"]) == ("TRPO", "CartPole-v1", 2)
    assert row["estimate"] == pytest.approx((185 + 186) / 2)  # last two points, seeds 0 and 1
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    assert main(["plot", "wandb:me/proj/wb", "--out", str(tmp_path / "again")]) == 0
    assert len(api.calls) == 1  # the second command reads the local mirror
    assert main(["plot", "wandb:me"]) == 2
