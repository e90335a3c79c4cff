"""analysis.plots on a synthetic run store: panels, series and labels, and the files.

The store (analysis.synthetic) has grids main (trpo/npg/pg x Hopper/CartPole x
3 seeds, one seed stopped early, one run failed before its first update, NaN
rows), delta (max_kl ablation with a run that failed mid-way) and cg (cg_iters).
"""

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from analysis import plots, results
from analysis.load import load_store
from analysis.synthetic import write_grid, write_synthetic_store

REPS = 200
TASKS = ["CartPole-v1", "Hopper-v5"]


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("runs"), updates=20)


@pytest.fixture(scope="module")
def figures(store_root):
    store = load_store(store_root)
    return {grid: {s.name: s.figure for s in plots.build_figures(store.select_grid(grid), reps=REPS)}
            for grid in store.grid_names}


def legend_labels(fig: Figure) -> set[str]:
    """Labels of the figure-level legend (its layout order depends on the width)."""
    return {t.get_text() for leg in fig.legends for t in leg.get_texts()}


def bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def texts(fig: Figure) -> str:
    return "\n".join([t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts])


def test_each_grid_gets_the_figures_its_data_supports(figures):
    common = {"aggregate", "performance_profile", "probability_of_improvement", "trust_region", "surrogate",
              "time_breakdown"}
    assert set(figures["main"]) == common | {"curves", "curves_walltime"}
    assert set(figures["delta"]) == common | {"ablation_max_kl", "curves_max_kl_trpo", "curves_max_kl_npg"}
    assert set(figures["cg"]) == common | {"ablation_cg_iters", "curves_cg_iters_trpo"}


def test_learning_curves_with_three_runs_draw_the_runs_not_a_band(figures):
    fig = figures["main"]["curves"]
    assert [ax.get_title() for ax in fig.axes] == TASKS
    assert legend_labels(fig) == {"TRPO", "NPG", "PG", "individual runs", "not all runs reach here"}
    cartpole, hopper = fig.axes
    assert cartpole.get_ylabel() == "mean episode return (training)"
    assert len(cartpole.collections) == len(hopper.collections) == 0  # no bootstrap band over 3 runs
    thin = [line for line in cartpole.lines if line.get_linewidth() < 1]
    assert len(thin) == 3 + 3 + 2  # TRPO and NPG 3 runs, PG 2 (one failed before its first update)
    means = [line for line in cartpole.lines if line.get_linewidth() >= 1]
    assert [line.get_color() for line in means] == [plots.ALGO_COLORS[a] for a in ("trpo", "npg", "pg")]
    dotted = [line for line in hopper.lines if line.get_linestyle() == ":"]
    assert [line.get_color() for line in dotted] == [plots.ALGO_COLORS["trpo"]]  # its early-stopped seed
    notes = texts(fig)
    assert "TRPO: 2 of 3 runs reached 40k steps" in notes
    assert "PG: 2 of 3 runs reached 20k steps" in notes and "1 failed before any update" in notes
    assert "Only 2 runs in the smallest group (fewer than 5)" in notes
    assert cartpole.get_xlabel() == "environment steps"


@pytest.fixture(scope="module")
def five_seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("five")
    write_grid(root, "five", {"algo": ["trpo", "npg"], "env_id": TASKS}, [0, 1, 2, 3, 4], updates=20,
               rng=np.random.default_rng(3))
    return results.compute(load_store(root), reps=REPS, grid="five")


def test_five_runs_get_bootstrap_bands_drawn_from_the_results_table(five_seeds):
    res = five_seeds
    curve = res.rows("return_curve", task="Hopper-v5", group="TRPO")
    assert (curve["interval"] == "95% bootstrap CI").all() and (curve["n_runs"] == 5).all()
    assert (curve["ci_low"] <= curve["estimate"] + 1e-9).all() and (curve["estimate"] <= curve["ci_high"] + 1e-9).all()
    fig = plots.plot_learning_curves(res)
    band = fig.axes[1].collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(curve["ci_low"].min()) and band.max() == pytest.approx(curve["ci_high"].max())
    assert "95% bootstrap CI" in legend_labels(fig) and "individual runs" not in legend_labels(fig)
    agg = {s.name: s.figure for s in plots.build_figures(res)}
    for ax in agg["aggregate"].axes:
        assert len(bars(ax)) == 2  # a CI bar per method
    (profile,) = agg["performance_profile"].axes
    assert len(profile.collections) == 2


def test_wall_clock_curves_use_time_axis(figures):
    fig = figures["main"]["curves_walltime"]
    assert len(fig.axes) == 2 and all(ax.get_xlabel().startswith("wall-clock time") for ax in fig.axes)


def test_ablation_over_delta_is_log_x_with_a_ci_series_per_algorithm(figures):
    fig = figures["delta"]["ablation_max_kl"]
    assert [ax.get_title() for ax in fig.axes] == TASKS
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 2
        np.testing.assert_allclose(ax.get_xticks(), [0.003, 0.01, 0.03])
    assert {"TRPO", "NPG"} <= legend_labels(fig)
    assert "NPG, δ=0.03 on CartPole-v1: 2 of 3 runs finished and used" in texts(fig)


def test_ablation_over_cg_iterations(figures):
    fig = figures["cg"]["ablation_cg_iters"]
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("CG iterations")
    np.testing.assert_allclose(ax.get_xticks(), [1, 3, 10])


def test_learning_curves_per_ablation_value(figures):
    fig = figures["delta"]["curves_max_kl_npg"]
    assert [ax.get_title() for ax in fig.axes] == ["CartPole-v1 · NPG", "Hopper-v5 · NPG"]
    assert {"δ=0.003", "δ=0.01", "δ=0.03"} <= legend_labels(fig)
    assert all(len(ax.collections) == 0 for ax in fig.axes)  # 3 runs per δ: runs drawn, no band
    assert "individual runs" in legend_labels(fig)
    assert "δ=0.03: 2 of 3 runs reached 20k steps" in texts(fig)


def test_trust_region_diagnostics(figures):
    fig = figures["delta"]["trust_region"]
    kl, beta, fraction, backtracks, cg, share = fig.axes
    assert kl.get_xscale() == kl.get_yscale() == "log"
    np.testing.assert_allclose(kl.get_xticks(), [0.003, 0.01, 0.03])
    delta_line = [c for c in kl.collections if isinstance(c, LineCollection) and c.get_label() == "KL = δ"]
    assert len(delta_line) == 1 and len(delta_line[0].get_segments()) == 3
    assert [t.get_text() for t in kl.get_legend().get_texts()] == ["KL = δ", "TRPO", "NPG"]  # PG has no δ
    assert beta.get_yscale() == "log"
    assert len([c for c in fraction.containers if isinstance(c, ErrorbarContainer)]) == 2
    # only TRPO searches; one bar per δ, never pooled over δ
    assert [t.get_text() for t in backtracks.get_legend().get_texts()] == ["TRPO, δ=0.003", "TRPO, δ=0.01",
                                                                          "TRPO, δ=0.03"]
    assert cg.get_yscale() == "log" and cg.get_xlabel() == "CG iterations run"
    assert len(bars(share)) == 3 * 2  # a bar per δ and task
    assert [t.get_text() for t in share.get_legend().get_texts()] == ["δ=0.003", "δ=0.01", "δ=0.03"]


def test_trust_region_diagnostics_of_a_cg_ablation(figures, store_root):
    kl, beta, fraction, _, cg, share = figures["cg"]["trust_region"].axes
    # δ is fixed in this grid: the step panels are drawn against the CG budget, with KL = δ as one line.
    assert kl.get_title() == "measured KL against CG iters"
    for ax in (kl, beta, fraction):
        np.testing.assert_allclose(ax.get_xticks(), [1, 3, 10])
        assert ax.get_xlabel() == "CG iterations, log scale"
    (delta_line,) = [line for line in kl.get_lines() if line.get_label() == "KL = δ"]
    np.testing.assert_allclose(delta_line.get_ydata(), [0.01, 0.01])
    # Backtracking grouped by the ablated setting (δ is fixed in this grid): a bar per budget.
    assert [t.get_text() for t in share.get_legend().get_texts()] == ["CG iters=1", "CG iters=3", "CG iters=10"]
    assert len(bars(share)) == 3
    # The residual is relative to the gradient: one median per budget, at its median of ‖r‖ / ‖g‖.
    assert cg.get_ylabel() == "final CG residual ‖g − F̃x‖ / ‖g‖"
    np.testing.assert_allclose(cg.get_xticks(), [1, 3, 10])
    metrics = load_store(store_root).select_grid("cg").metrics
    expected = (metrics["policy/cg_residual"] / metrics["policy/grad_norm"]).groupby(metrics["cg_iters"]).median()
    (medians,) = [line for line in cg.get_lines() if line.get_marker() == "o"]
    np.testing.assert_allclose(medians.get_ydata(), expected.to_numpy())


def test_surrogate_panels_per_task(figures):
    fig = figures["main"]["surrogate"]
    assert [ax.get_title() for ax in fig.axes] == TASKS
    assert legend_labels(fig) == {"TRPO", "NPG", "PG", "actual = predicted"}


def test_aggregate_metrics_with_intervals(figures):
    fig = figures["main"]["aggregate"]
    assert [ax.get_title() for ax in fig.axes] == ["IQM", "Median", "Mean", "Optimality gap"]
    for ax in fig.axes:
        assert len(bars(ax)) == 0  # 2-3 runs per task: point estimates, no interval bars
        assert len([line for line in ax.lines if line.get_marker() == "o"]) == 3
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["PG", "NPG", "TRPO"]
    assert "Normalized score" in texts(fig) and "point estimates only, no bootstrap intervals" in texts(fig)
    # TRPO's IQM lies above PG's in this store
    trpo, _, pg = [line.get_xdata()[0] for line in fig.axes[0].lines]
    assert trpo > pg


def test_performance_profile_and_probability_of_improvement(figures):
    fig = figures["main"]["performance_profile"]
    (ax,) = fig.axes
    assert len(ax.lines) == 3 and len(ax.collections) == 0  # no bands over 2-3 runs
    assert legend_labels(fig) == {"TRPO", "NPG", "PG"}
    (poi,) = figures["main"]["probability_of_improvement"].axes
    assert [t.get_text() for t in poi.get_yticklabels()] == ["P(NPG > PG)", "P(TRPO > PG)", "P(TRPO > NPG)"]
    # six ablation methods: compare algorithms at equal δ rather than all 15 pairs
    (poi,) = figures["delta"]["probability_of_improvement"].axes
    assert len(poi.get_yticklabels()) == 3
    assert poi.get_yticklabels()[-1].get_text() == "P(TRPO, δ=0.003 > NPG, δ=0.003)"


def test_time_breakdown_stacks_components_per_method(figures):
    fig = figures["main"]["time_breakdown"]
    assert [ax.get_title() for ax in fig.axes] == TASKS
    for ax in fig.axes:
        assert len(bars(ax)) == 3 * 4
        assert [t.get_text() for t in ax.get_xticklabels()] == ["TRPO", "NPG", "PG"]
    assert legend_labels(fig) == {"collect rollouts", "policy update", "value fit", "other (logging, checkpoints)"}


def test_no_ablation_or_trust_region_figures_without_their_data(tmp_path):
    write_grid(tmp_path, "pg", {"algo": ["pg"], "env_id": ["CartPole-v1"]}, [0, 1], updates=10,
               rng=np.random.default_rng(0))
    names = {s.name for s in plots.build_figures(load_store(tmp_path), reps=REPS)}
    assert {"curves", "curves_walltime", "surrogate", "time_breakdown"} <= names
    assert not [n for n in names if n.startswith("ablation") or n == "trust_region"]


def test_make_all_writes_every_figure_as_png_and_pdf(store_root, figures, tmp_path):
    # The ablation figures are written by test_analysis_report (delta grid).
    paths = plots.make_all([store_root / "main"], tmp_path, reps=REPS)
    expected = {f"{name}.{ext}" for name in figures["main"] for ext in ("png", "pdf")} | {"results.csv"}
    assert sorted(p.name for p in paths) == sorted(expected)
    for path in paths:
        assert path.parent == tmp_path and path.is_file() and path.stat().st_size > 1000
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "trust_region.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    assert plots.make_all([tmp_path / "empty"], tmp_path / "none") == []


def test_several_grids_go_to_one_directory_each(store_root, tmp_path):
    store = load_store([store_root / "main", store_root / "cg"])
    assert plots.grid_output_dirs(store, tmp_path) == {"cg": tmp_path / "cg", "main": tmp_path / "main"}
    assert plots.grid_output_dirs(store.select_grid("cg"), tmp_path) == {"cg": tmp_path}


def test_save_figure_replaces_files_atomically(tmp_path):
    fig = Figure()
    fig.subplots().plot([0, 1], [0, 1])
    first = plots.save_figure(fig, tmp_path, "f")
    second = plots.save_figure(fig, tmp_path, "f")
    assert first == second == [tmp_path / "f.png", tmp_path / "f.pdf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]


def test_algorithm_colours_are_fixed_and_distinct():
    assert len(set(plots.ALGO_COLORS.values())) == 3
    assert plots.algo_color("trpo") == plots.ALGO_COLORS["trpo"]
    assert plots.algo_color("ppo") == plots.algo_color("ppo")


def test_trust_region_diagnostics_on_a_linear_axis(tmp_path):
    """A backtracking-factor ablation spans less than 8x: its panels use a linear axis, where
    the algorithms' series sit side by side, shifted by the same distance at every value."""
    write_grid(tmp_path, "bt", {"algo": ["trpo", "npg"], "env_id": ["Hopper-v5"], "backtrack_coef": [0.5, 0.8]},
               [0, 1], updates=20, rng=np.random.default_rng(0))
    figs = {s.name: s.figure for s in plots.build_figures(load_store(tmp_path).select_grid("bt"), reps=REPS)}
    kl, beta, fraction = figs["trust_region"].axes[:3]
    for ax in (kl, beta, fraction):
        assert ax.get_xscale() == "linear" and ax.get_xlabel() == "line-search shrink factor"
        np.testing.assert_allclose(ax.get_xticks(), [0.5, 0.8])
        series = {c.get_label(): c.lines[0].get_xdata() for c in ax.containers if isinstance(c, ErrorbarContainer)}
        trpo, npg = np.asarray(series["TRPO"], float), np.asarray(series["NPG"], float)
        # Each method left and right of the value it was run at, by one constant offset.
        assert (trpo < [0.5, 0.8]).all() and (npg > [0.5, 0.8]).all()
        np.testing.assert_allclose(trpo - [0.5, 0.8], (trpo - [0.5, 0.8])[0])
        np.testing.assert_allclose(npg - [0.5, 0.8], -(trpo - [0.5, 0.8]))
        lo, hi = ax.get_xlim()
        assert lo < trpo.min() and npg.max() < hi
