"""Properties every figure must have: its data inside its axes, honest small samples,
identical series said to be identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from analysis import plots, results
from analysis.load import load_store
from analysis.report import write_report
from analysis.synthetic import write_grid, write_synthetic_store

REPS = 100
TASKS = ["CartPole-v1", "Hopper-v5"]


def _outside(values: np.ndarray, lim: tuple[float, float]) -> np.ndarray:
    lo, hi = sorted(lim)
    tol = 1e-9 * max(abs(hi - lo), abs(hi), 1e-300)
    v = values[np.isfinite(values)]
    return v[(v < lo - tol) | (v > hi + tol)]


def data_outside_axes(fig: Figure) -> list[str]:
    """Every data point (lines, dots, bands, error bars, bars) drawn in data coordinates that
    falls outside its axes' limits, described; [] when all of it is visible."""
    problems = []
    for ax in fig.axes:
        xlim, ylim = ax.get_xlim(), ax.get_ylim()
        points = []
        for artist in ax.get_children():
            if isinstance(artist, Line2D) and artist.get_transform() == ax.transData:
                points.append((artist, np.asarray(artist.get_xdata(), float), np.asarray(artist.get_ydata(), float)))
            elif isinstance(artist, PathCollection) and artist.get_offset_transform() == ax.transData:
                xy = np.asarray(artist.get_offsets(), float).reshape(-1, 2)
                points.append((artist, xy[:, 0], xy[:, 1]))
            elif isinstance(artist, (PolyCollection, LineCollection)) and artist.get_transform() == ax.transData:
                xy = np.concatenate([p.vertices for p in artist.get_paths()] or [np.empty((0, 2))])
                points.append((artist, xy[:, 0], xy[:, 1]))
            elif isinstance(artist, Rectangle) and artist is not ax.patch and artist.get_transform() == ax.transData:
                x, y, w, h = artist.get_x(), artist.get_y(), artist.get_width(), artist.get_height()
                points.append((artist, np.array([x, x + w]), np.array([y, y + h])))
        for artist, xs, ys in points:
            ok = np.isfinite(xs) & np.isfinite(ys) if xs.shape == ys.shape else slice(None)
            bad_x, bad_y = _outside(xs[ok], xlim), _outside(ys[ok], ylim)
            if bad_x.size or bad_y.size:
                problems.append(f"{ax.get_title()!r}: {type(artist).__name__} {artist.get_label()!r} has "
                                f"x {bad_x[:3]} outside {xlim} or y {bad_y[:3]} outside {ylim}")
    return problems


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Every kind of grid the figures are drawn for: the synthetic store (3 seeds), a 5-seed grid,
    one run per group, and CG solves that stop before their budget."""
    root = tmp_path_factory.mktemp("stores")
    write_synthetic_store(root / "synthetic", updates=20)
    write_grid(root / "five", "five", {"algo": ["trpo", "npg"], "env_id": TASKS}, range(5), updates=20,
               rng=np.random.default_rng(3))
    write_grid(root / "one", "one", {"algo": ["trpo", "npg", "pg"], "env_id": TASKS}, [0], updates=20,
               rng=np.random.default_rng(4))
    write_grid(root / "categorical", "categorical",
               {"algo": ["trpo"], "env_id": TASKS, "fvp": ["analytic", "empirical"], "kl_bound": ["mean", "max"]},
               range(5), updates=20, rng=np.random.default_rng(6))
    grid = write_grid(root / "early", "early", {"algo": ["trpo", "npg"], "env_id": ["CartPole-v1"]}, [0, 1],
                      updates=20, rng=np.random.default_rng(5))
    for run in grid.iterdir():
        if (run / "metrics.csv").is_file():
            m = pd.read_csv(run / "metrics.csv")
            k = len(m) * 3 // 8  # 37.5% of updates, as CartPole's solves in the quickstart
            m.loc[m.index[:k], "policy/cg_iters"] = np.resize([5.0, 6.0, 8.0], k)
            m.to_csv(run / "metrics.csv", index=False)
    return root


def all_figures(root):
    store = load_store(root)
    return {(g, s.name): s.figure for g in store.grid_names
            for s in plots.build_figures(results.compute(store.select_grid(g), reps=REPS, grid=g))}


def test_every_figure_keeps_its_data_inside_its_axes(stores):
    figures = {}
    for name in ("synthetic", "five", "one", "early", "categorical"):
        figures.update(all_figures(stores / name))
    # a categorical setting gets its final-return figure, its values side by side
    assert {("categorical", "ablation_fvp"), ("categorical", "ablation_kl_bound")} <= set(figures)
    for name in ("ablation_fvp", "ablation_kl_bound"):
        labels = [t.get_text() for ax in figures[("categorical", name)].axes for t in ax.get_xticklabels()]
        assert {"analytic", "empirical"} <= set(labels) or {"mean", "max"} <= set(labels), labels
    figures.update(all_figures(Path(__file__).resolve().parents[1] / "results" / "quickstart"))  # real runs
    assert len(figures) >= 45
    problems = {key: p for key, fig in figures.items() if (p := data_outside_axes(fig))}
    assert problems == {}


def test_cg_residual_axis_spans_solves_that_stop_early(stores):
    fig = all_figures(stores / "early")[("early", "trust_region")]
    cg = fig.axes[4]
    lo, hi = cg.get_xlim()
    assert lo < 5 and hi > 10  # budget 10, solves that stopped after 5 to 8 iterations
    assert data_outside_axes(fig) == []


def test_the_check_finds_data_outside_the_axes():
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1, 2], [0, 1, 2])
    assert data_outside_axes(fig) == []
    ax.set_xlim(0.5, 1.5)
    assert len(data_outside_axes(fig)) == 1


def test_one_run_per_group_gets_no_aggregates_profiles_or_intervals(stores, tmp_path, fast_figures):
    res = results.compute(load_store(stores / "one"), reps=REPS, grid="one")
    finals = res.rows("final_return")
    assert (finals["n"] <= 1).all() and finals["ci_low"].isna().all() and (finals["interval"] == "").all()
    assert res.rows("normalized/IQM").empty and res.rows("profile").empty
    assert res.rows("probability_of_improvement").empty
    names = {s.name for s in plots.build_figures(res)}
    assert {"curves", "trust_region"} <= names
    assert not names & {"aggregate", "performance_profile", "probability_of_improvement"}
    md = write_report([stores / "one"], tmp_path, reps=REPS).read_text()
    final = md[md.index("### Final return"):md.index("IQM difference from the reference")]
    rows = [line for line in final.splitlines() if line.startswith(("| CartPole-v1", "| Hopper"))]
    assert len(rows) == 2 and all(row.count("(n=1)") + row.count("(n=0 of 1)") == 3 for row in rows)
    assert "[" not in "".join(rows) and "No interquartile-mean table" in final
    assert "no aggregate figure, performance profile or probability of improvement" in md
    curves = next(s for s in plots.build_figures(res) if s.name == "curves").figure
    assert "One run in the smallest group: the runs are drawn as they are, with no interval." in \
        "".join(t.get_text() for t in curves.texts).replace("\n", " ")
    labels = {t.get_text() for leg in curves.legends for t in leg.get_texts()}
    assert "individual runs" in labels and not [label for label in labels if "CI" in label]


def test_three_runs_give_their_range_not_a_ci(stores):
    res = results.compute(load_store(stores / "synthetic" / "cg"), reps=REPS, grid="cg")
    final = res.rows("final_return", statistic="mean")
    assert (final["interval"] == "range of runs").all()
    scores = res.final[res.final["finished"]].groupby("method")["final"]
    for row in final.to_dict("records"):
        assert row["ci_low"] == scores.min()[row["group"]] and row["ci_high"] == scores.max()[row["group"]]
    main = results.compute(load_store(stores / "synthetic" / "main"), reps=REPS, grid="main")
    assert not main.rows("normalized/IQM").empty  # 2-3 runs: aggregates as point estimates
    assert main.rows("normalized/IQM")["ci_low"].isna().all()


def test_identical_series_are_named_in_legend_and_caption(tmp_path):
    grid = write_grid(tmp_path, "same", {"algo": ["trpo", "npg"], "env_id": ["CartPole-v1"]}, [0, 1], updates=20,
                      rng=np.random.default_rng(0))
    for seed in (0, 1):  # NPG's runs as TRPO's: what a run whose line search never backtracks logs
        trpo = pd.read_csv(grid / f"trpo-CartPole-v1-s{seed}" / "metrics.csv")
        trpo.assign(**{"policy/backtracks": np.nan, "policy/step_fraction": np.nan}).to_csv(
            grid / f"npg-CartPole-v1-s{seed}" / "metrics.csv", index=False)
    res = results.compute(load_store(tmp_path), reps=REPS, grid="same")
    assert res.identical_everywhere() == [["TRPO", "NPG"]]
    figs = {s.name: s.figure for s in plots.build_figures(res)}
    for name in ("curves", "surrogate", "performance_profile"):
        labels = {t.get_text() for leg in figs[name].legends for t in leg.get_texts()}
        assert "NPG (identical to TRPO)" in labels, name
    for name in ("curves", "trust_region", "surrogate", "aggregate"):
        assert "TRPO and NPG: identical runs" in "\n".join(t.get_text() for t in figs[name].texts), name
