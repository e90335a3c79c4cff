"""Every figure a grid's results support, saved as PNG and PDF.

Statistics come from ``analysis.results`` (computed once per grid); the figure families live in
``curves`` (learning curves, ablations), ``trust_region`` (natural-gradient diagnostics,
surrogate), ``aggregates`` (normalized scores across tasks, time) and share ``style``. Figures are
built on ``matplotlib.figure.Figure`` (no pyplot state) and written by ``style.save_figure`` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from analysis import results as results_mod
from analysis.aggregates import aggregate_figures, plot_time_breakdown
from analysis.curves import ablation_figures, curve_figures, plot_learning_curves
from analysis.load import RunStore, load_store
from analysis.results import TIME_PARTS, Results, finite, natural_rows
from analysis.style import ALGO_COLORS, algo_color, save_figure
from analysis.trust_region import plot_surrogate, plot_trust_region


@dataclass
class FigureSpec:
    """A built figure, its file stem, a one-line caption and where it was saved."""

    name: str
    figure: Figure | None
    caption: str
    paths: list[Path] | None = None


def build_figures(res: Results | RunStore, **kwargs: Any) -> Iterator[FigureSpec]:
    """Every figure one grid's results support (a RunStore is computed first, with ``kwargs``).

    Learning curves (env steps and wall time) when no setting but the algorithm varies; for each
    setting that tells methods apart, final return against it and learning curves per value;
    aggregate metrics, performance profile and probability of improvement on normalized scores
    when every group has two runs or more; trust-region diagnostics and surrogate improvement when
    natural-gradient columns exist; time breakdown.
    """
    if isinstance(res, RunStore):
        res = results_mod.compute(res, **kwargs)
    if res.final.empty:
        return
    for name, fig, text in [*curve_figures(res), *ablation_figures(res), *aggregate_figures(res)]:
        yield FigureSpec(name, fig, text)
    if len(natural_rows(res.metrics)) and len(res.rows("kl")):
        yield FigureSpec("trust_region", plot_trust_region(res),
                         "Trust-region diagnostics of the natural-gradient methods.")
    if len(finite(res.metrics, "policy/surrogate_expected", "policy/surrogate_actual")):
        yield FigureSpec("surrogate", plot_surrogate(res),
                         "Predicted (first-order) against actual surrogate improvement per update.")
    if any(c in res.metrics for c in TIME_PARTS) and len(res.metrics):
        yield FigureSpec("time_breakdown", plot_time_breakdown(res),
                         "Where time goes: mean seconds per update by component.")


def grid_output_dirs(store: RunStore, out_dir: Path) -> dict[str, Path]:
    """Figures go to out_dir for a single grid, out_dir/<grid> for several."""
    names = store.grid_names
    # a file-name-safe directory: "same [a]" (a grid two stores share) becomes same_a
    return {g: Path(out_dir) if len(names) == 1 else Path(out_dir) / (re.sub(r"[^A-Za-z0-9._=+-]+", "_", g).strip("_"))
            for g in names}


def write_figures(all_results: Mapping[str, Results], out_dirs: Mapping[str, Path]) -> dict[str, list[FigureSpec]]:
    """Build and save every supported figure per grid; returns specs with their paths."""
    written: dict[str, list[FigureSpec]] = {}
    for grid, res in all_results.items():
        specs = []
        for spec in build_figures(res):
            spec.paths = save_figure(spec.figure, out_dirs[grid], spec.name)
            spec.figure = None  # let the figure be collected
            specs.append(spec)
        written[grid] = specs
    return written


def make_all(runs_dirs: Sequence[Path], out_dir: Path, *, store: RunStore | None = None, **kwargs: Any) -> list[Path]:
    """Write every figure the run stores under ``runs_dirs`` (or ``store``) support, and
    results.csv (the statistics they are drawn from) beside them; return the paths."""
    store = load_store(runs_dirs) if store is None else store
    if store.runs.empty:
        return []
    all_results = results_mod.compute_all(store, **kwargs)
    written = write_figures(all_results, grid_output_dirs(store, out_dir))
    table = results_mod.write_table(all_results, Path(out_dir) / "results.csv")
    return [*(p for specs in written.values() for s in specs for p in (s.paths or [])), table]


__all__ = ["ALGO_COLORS", "FigureSpec", "algo_color", "build_figures", "grid_output_dirs", "make_all",
           "plot_learning_curves", "save_figure", "write_figures"]
