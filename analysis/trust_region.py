"""Trust-region diagnostics of the natural-gradient methods, and the surrogate figure.

Markers and bars come from ``results`` (medians with 5th-95th percentiles of updates; means
over runs with a 95% bootstrap CI from MIN_RUNS_FOR_CI runs); dots are single updates or runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis import summary
from analysis.results import (
    CI,
    Results,
    cg_residuals,
    finite,
    natural_rows,
    trust_region_axis,
)
from analysis.style import (
    CI_LABEL,
    MAX_DOTS,
    SeriesStyle,
    algo_color,
    caption,
    dot_alpha,
    legend_top,
    log_y,
    mark_identical,
    method_styles,
    no_data,
    panel_note,
    panels,
    styled,
    subsample,
    use_log_axis,
    value_colors,
    value_ticks,
)
from analysis.summary import algo_label, format_value


def _series(res: Results, table: pd.DataFrame) -> list[tuple[str, Any, list[str]]]:
    """(label, colour, methods) per series of a panel: one per algorithm when each has a single
    method at each x (the usual case), else one per method, so methods that differ in another
    setting (or store) are neither pooled nor stacked unlabelled."""
    algo_of = res.final.drop_duplicates("method").set_index("method")["algo"]
    methods = [m for m in res.methods if m in set(table["group"])]
    if not table.assign(_a=table["group"].map(algo_of)).duplicated(["_a", "x"]).any():
        algos = summary.sorted_values(algo_of[methods].unique())
        return [(algo_label(a), algo_color(a), [m for m in methods if algo_of[m] == a]) for a in algos]
    styles = method_styles(res.final, methods)
    return [(styles[m].label, styles[m].color, [m]) for m in methods]


def _distribution_by(ax: Axes, res: Results, measure: str, column: str, by: str,
                     rng: np.random.Generator) -> list[float]:
    """Per method: its updates' values as faint dots at its value of ``by``, and the median
    with its 5th-95th percentile from ``results``."""
    rows = finite(natural_rows(res.metrics), column, by)
    table = res.rows(measure)
    values = sorted(rows[by].astype(float).unique())
    log = use_log_axis(by, values)
    series = _series(res, table)
    for k, (label, color, methods) in enumerate(series):
        shift = _algo_offset(k, len(series))
        t = table[table["group"].isin(methods)].sort_values("x")
        for method in t["group"]:
            v = rows.loc[rows["method"] == method, column].to_numpy(float)
            v = v[v > 0]
            show = v if v.size <= MAX_DOTS // 4 else rng.choice(v, MAX_DOTS // 4, replace=False)
            x = _shifted(float(rows.loc[rows["method"] == method, by].iloc[0]), shift, log, values)
            jitter = _shifted(x, 10 ** rng.uniform(-0.02, 0.02, show.size), log, values)
            ax.scatter(jitter, show, s=4, color=color, alpha=dot_alpha(show.size), linewidths=0)
        xs = _shifted(t["x"].to_numpy(float), shift, log, values)
        est = t["estimate"].to_numpy(float)
        ax.errorbar(xs, est, yerr=[est - t["ci_low"].to_numpy(float), t["ci_high"].to_numpy(float) - est],
                    color=color, marker="o", linestyle="none", capsize=3, markersize=5, label=label)
    _setting_axis(ax, by, values, log)
    return values


def _setting_xlabel(by: str, log: bool) -> str:
    title = "δ (setting max_kl)" if by == "max_kl" else summary.AXIS_TITLES.get(by, by)
    return title + (", log scale" if log else "")


def _algo_offset(k: int, n: int) -> float:
    """Multiplicative offset of the k-th of n algorithms' series, centred on 1."""
    return 10 ** ((k - (n - 1) / 2) * 0.07)


def _shifted(x: Any, factor: Any, log: bool, values: Sequence[float]) -> Any:
    """Offset x by a multiplicative ``factor`` on a log axis, or by the same share of the
    axis span on a linear one (so series of several algorithms sit side by side)."""
    if log:
        return x * factor
    span = (max(values) - min(values)) or 1.0
    return x + np.log10(factor) * span * 2


def _setting_axis(ax: Axes, by: str, values: Sequence[float], log: bool) -> None:
    value_ticks(ax, values, log=log)
    if log:
        ax.set_xlim(min(values) / 2.5, max(values) * 2.5)
    else:
        pad = 0.15 * ((max(values) - min(values)) or 1.0)
        ax.set_xlim(min(values) - pad, max(values) + pad)
    ax.set_xlabel(_setting_xlabel(by, log))


@styled
def plot_kl_vs_delta(res: Results, *, by: str = "max_kl", ax: Axes | None = None) -> Axes:
    """Measured KL(π_old‖π_new) after each update against δ (or another setting, ``by``, at
    a fixed δ), with the line KL = δ. Dots: updates; markers and bars: median, 5th-95th percentile."""
    ax = ax if ax is not None else Figure().subplots()
    rows = finite(natural_rows(res.metrics), "policy/kl", "max_kl", by)
    if rows.empty or res.rows("kl").empty:
        return no_data(ax, "KL with δ")
    values = _distribution_by(ax, res, "kl", "policy/kl", by, np.random.default_rng(res.seed))
    if by == "max_kl":
        d = np.asarray(values)
        ax.hlines(d, d / 10**0.25, d * 10**0.25, color="black", linestyle="--", linewidth=1.2, label="KL = δ", zorder=3)
    else:
        bounds = sorted(rows["max_kl"].astype(float).unique())
        for d in bounds:
            ax.axhline(d, color="black", linestyle="--", linewidth=1.2, zorder=3,
                       label="KL = δ" if len(bounds) == 1 else f"KL = δ = {format_value(d)}")
    log_y(ax)
    ax.set_ylabel("KL after update (mean over states)")
    ax.set_title("measured KL against δ" if by == "max_kl" else
                 f"measured KL against {summary.AXIS_LABELS.get(by, by)}")
    # KL grows with δ, so the points run from lower left to upper right: keep the legend
    # in the empty upper-left corner when δ varies.
    ax.legend(loc="upper left" if by == "max_kl" and len(values) > 1 else "lower left")
    return ax


@styled
def plot_step_size(res: Results, *, by: str = "max_kl", ax: Axes | None = None) -> Axes:
    """Step size β = √(2δ / sᵀFs) per update, distribution per method."""
    ax = ax if ax is not None else Figure().subplots()
    if finite(natural_rows(res.metrics), "policy/step_size", by).empty or res.rows("step_size").empty:
        return no_data(ax, "step size")
    _distribution_by(ax, res, "step_size", "policy/step_size", by, np.random.default_rng(res.seed + 1))
    log_y(ax)
    ax.set_ylabel("step size β")
    ax.set_title("full-step size β")
    # β grows with δ (upper left is empty then); a finer CG solve shrinks it.
    ax.legend(loc="upper left" if by == "max_kl" else "upper right")
    return ax


@styled
def plot_step_fraction(res: Results, *, by: str = "max_kl", ax: Axes | None = None) -> Axes:
    """Mean accepted fraction of the full step (0 when rejected) per method: a 95% CI over runs,
    or, under MIN_RUNS_FOR_CI runs, each run's mean as a dot."""
    ax = ax if ax is not None else Figure().subplots()
    rows = finite(natural_rows(res.metrics), "policy/step_fraction", by)
    table = res.rows("step_fraction")
    if rows.empty or table.empty:
        return no_data(ax, "step fraction")
    per_run = rows.groupby(["method", "run_id"], sort=False)["policy/step_fraction"].mean().reset_index()
    values = sorted(rows[by].astype(float).unique())
    log = use_log_axis(by, values)
    with_ci = bool((table["interval"] == CI).all())
    series = _series(res, table)
    for k, (label, color, methods) in enumerate(series):
        shift = _algo_offset(k, len(series))
        t = table[table["group"].isin(methods)].sort_values("x")
        xs, est = _shifted(t["x"].to_numpy(float), shift, log, values), t["estimate"].to_numpy(float)
        err = [est - t["ci_low"].to_numpy(float), t["ci_high"].to_numpy(float) - est] if with_ci else None
        ax.errorbar(xs, est, yerr=err, color=color, marker="o", capsize=3, label=label)
        if not with_ci:
            for method, x in zip(t["group"], xs):
                v = per_run.loc[per_run["method"] == method, "policy/step_fraction"].to_numpy(float)
                ax.scatter(np.full(v.size, x), v, s=10, color=color, alpha=0.45, linewidths=0)
    _setting_axis(ax, by, values, log)
    ax.set_ylim(-0.03, 1.08)
    ax.set_ylabel("accepted fraction of full step")
    ax.set_title("accepted step fraction" + (f" ({CI_LABEL})" if with_ci else " (dots: runs)"))
    ax.legend(loc="lower left")
    return ax


@styled
def plot_backtracks(res: Results, ax: Axes | None = None) -> Axes:
    """Share of updates by number of line-search backtracks, per algorithm (per method where an
    algorithm has several)."""
    ax = ax if ax is not None else Figure().subplots()
    rows = finite(res.metrics, "policy/backtracks")
    if rows.empty:
        return no_data(ax, "line search")
    series = _series(res, rows.drop_duplicates("method").assign(group=lambda f: f["method"], x=0.0))
    top = int(rows["policy/backtracks"].max())
    counts = np.arange(top + 1)
    width = 0.8 / len(series)
    for k, (label, color, methods) in enumerate(series):
        b = rows.loc[rows["method"].isin(methods), "policy/backtracks"].astype(int).to_numpy()
        share = np.bincount(b, minlength=top + 1) / b.size
        ax.bar(counts + (k - (len(series) - 1) / 2) * width, share, width=width, color=color, label=label)
    ax.set_xticks(counts)
    ax.grid(axis="x", visible=False)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the legend above the bars
    ax.set_xlabel("backtracks in the update's line search")
    ax.set_ylabel("share of updates")
    ax.set_title("backtracks per update")
    ax.legend(loc="upper right")
    return ax


@styled
def plot_cg_residual(res: Results, *, by: str = "max_kl", ax: Axes | None = None) -> Axes:
    """Final CG residual against CG iterations run, per update (log y): relative to the
    right-hand side, ‖g − F̃x‖ / ‖g‖, where the gradient norm is logged. Medians are per CG
    budget (the ``cg_iters`` setting) when it is known, so a budget whose solves sometimes
    stop early at the tolerance still gets one marker; the x-axis spans every update, early
    stops included."""
    ax = ax if ax is not None else Figure().subplots()
    rows, relative = cg_residuals(natural_rows(res.metrics))
    table = res.rows("cg_residual")
    if rows.empty or table.empty:
        return no_data(ax, "CG residual")
    rng = np.random.default_rng(res.seed)
    algo_of = res.final.drop_duplicates("method").set_index("method")["algo"]
    algos = summary.sorted_values(rows["algo"])
    budgets = sorted(table["x"].astype(float).unique())
    drawn: list[np.ndarray] = []
    for k, algo in enumerate(algos):
        r = rows[rows["algo"] == algo]
        factor = 1 + (k - (len(algos) - 1) / 2) * 0.12 * 0.3
        r = subsample(r, MAX_DOTS, rng)
        x = r["policy/cg_iters"].to_numpy(float) * factor * 10 ** rng.uniform(-0.015, 0.015, len(r))
        ax.scatter(x, r["_res"], s=4, color=algo_color(algo), alpha=dot_alpha(x.size), linewidths=0)
        med = table[table["group"].map(algo_of) == algo].sort_values("x")
        if med["x"].duplicated().any():
            # Several methods share a budget (a δ ablation, two stores): a labelled marker per
            # method, side by side, rather than pooled or stacked unlabelled.
            styles = method_styles(res.final, [m for m in res.methods if m in set(med["group"])])
            for j, m in enumerate(styles):
                row = med[med["group"] == m].iloc[0]
                step = 1 + (j - (len(styles) - 1) / 2) * 0.012
                ax.plot([row["x"] * factor * step], [row["estimate"]], color=styles[m].color, marker="o",
                        markeredgecolor="0.2", linestyle="none", label=styles[m].label)
        else:
            ax.plot(med["x"].to_numpy(float) * factor, med["estimate"].to_numpy(float), color=algo_color(algo),
                    marker="o", linestyle="none",
                    label=med["group"].iloc[0] if med["group"].nunique() == 1 else algo_label(algo))
        drawn += [x, med["x"].to_numpy(float) * factor]
    # The axis spans every solve, including those that stopped at the tolerance before the budget.
    run = sorted(rows["policy/cg_iters"].astype(float).unique())
    lo, hi = min(run[0], budgets[0]), max(run[-1], budgets[-1])
    log = len(budgets) > 1 and hi / max(lo, 1) >= 4
    value_ticks(ax, budgets if len(budgets) > 1 else sorted({lo, budgets[0], hi}), log=log)
    xs = np.concatenate(drawn)
    if log:
        ax.set_xlim(xs.min() / 1.25, xs.max() * 1.25)
    else:
        pad = max(0.08 * (xs.max() - xs.min()), 0.05 * xs.max())
        ax.set_xlim(xs.min() - pad, xs.max() + pad)
    log_y(ax)
    entries = len(ax.get_legend_handles_labels()[1])
    if entries > 2:  # headroom above the dots for a legend of one line per method
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * (hi / lo) ** (0.1 * entries))
    ax.set_xlabel("CG iterations run")
    ax.set_ylabel("final CG residual ‖g − F̃x‖ / ‖g‖" if relative else "final CG residual ‖r‖")
    ax.set_title("conjugate-gradient residual (markers: medians" + (" per CG budget)" if len(budgets) > 1 else ")"))
    ax.legend(loc="upper right")
    return ax


@styled
def plot_backtrack_share(res: Results, *, by: str = "max_kl", ax: Axes | None = None) -> Axes:
    """Share of updates whose line search backtracked, per task and method (its value of ``by``):
    a 95% CI over runs, or, under MIN_RUNS_FOR_CI runs, each run's share as a dot."""
    ax = ax if ax is not None else Figure().subplots()
    table = res.rows("backtrack_share")
    rows = finite(res.metrics, "policy/backtracks")
    if table.empty:
        return no_data(ax, "line search")
    per_run = (rows.assign(backtracked=rows["policy/backtracks"] > 0)
               .groupby(["env_id", "method", "run_id"], sort=False)["backtracked"].mean().reset_index())
    algo_of = res.final.drop_duplicates("method").set_index("method")["algo"]
    tasks = summary.sorted_values(table["task"])
    methods = sorted(table["group"].unique(), key=lambda m: (summary.sort_key(algo_of[m]),
                     float(table.loc[table["group"] == m, "x"].iloc[0])))
    multi_algo = algo_of[methods].nunique() > 1
    value_of = {m: float(table.loc[table["group"] == m, "x"].iloc[0]) for m in methods}
    by_value = len(set(value_of.values())) == len(methods)  # else methods differ in another setting too
    colors = value_colors(sorted(set(value_of.values()))) if by_value else \
        {m: s.color for m, s in method_styles(res.final, methods).items()}
    with_ci = bool((table["interval"] == CI).all())
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        t = table[table["group"] == m].set_index("task").reindex(tasks)
        est = t["estimate"].to_numpy(float)
        err = [np.nan_to_num(est - t["ci_low"].to_numpy(float)), np.nan_to_num(t["ci_high"].to_numpy(float) - est)]
        label = summary.axis_value_label(by, value_of[m]) if by_value else m
        label = f"{algo_label(algo_of[m])}, {label}" if multi_algo and by_value else label
        xs = np.arange(len(tasks)) + (k - (len(methods) - 1) / 2) * width
        ax.bar(xs, est, width=width, color=colors[value_of[m] if by_value else m],
               edgecolor=algo_color(algo_of[m]) if multi_algo else "none",
               yerr=err if with_ci else None, capsize=2, error_kw={"elinewidth": 0.8}, label=label)
        if not with_ci:
            for x, task in zip(xs, tasks):
                v = per_run.loc[(per_run["env_id"] == task) & (per_run["method"] == m), "backtracked"].to_numpy(float)
                ax.scatter(np.full(v.size, x), v, s=8, color="0.2", alpha=0.6, linewidths=0, zorder=3)
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.grid(axis="x", visible=False)
    if not (per_run["backtracked"] > 0).any():
        panel_note(ax, ["no update backtracked"], loc="lower left")
    # Headroom above 1 for the legend, so it never covers a bar; long method names one per row.
    ncols = min(len(methods), 3) if max(len(str(h.get_label())) for h in ax.containers) <= 14 else 1
    nrows = math.ceil(len(methods) / ncols)
    ax.set_ylim(0, 1.05 + 0.12 * nrows)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("share of updates that backtracked")
    ax.set_title("line search backtracked" + (f" ({CI_LABEL})" if with_ci else " (dots: runs)"))
    ax.legend(loc="upper center", ncols=ncols, handlelength=1.2, columnspacing=1.0)
    return ax


def _one_legend_for_long_labels(fig: Figure, axes: Sequence[Axes], longest: int = 24) -> None:
    """Methods named by several settings or a store do not fit legends inside the panels: one
    legend above them instead, each label once."""
    labels = [label for ax in axes for label in ax.get_legend_handles_labels()[1]]
    if max(map(len, labels), default=0) <= longest:
        return
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    legend_top(fig, [_proxy(h, label) for label, h in handles.items()])


def _proxy(handle: Any, label: str) -> Any:
    """A plain legend handle that looks like ``handle`` and carries ``label`` (legend_top reads
    labels from handles)."""
    if isinstance(handle, ErrorbarContainer):
        line = handle.lines[0]
        return Line2D([], [], color=line.get_color(), marker=line.get_marker(), linestyle="none", label=label)
    if isinstance(handle, BarContainer):
        return Patch(facecolor=handle.patches[0].get_facecolor(), label=label)
    if isinstance(handle, LineCollection):
        return Line2D([], [], color=handle.get_colors()[0], linestyle="--", label=label)
    if isinstance(handle, Line2D):
        return Line2D([], [], color=handle.get_color(), marker=handle.get_marker(), linestyle=handle.get_linestyle(),
                      label=label)
    return Line2D([], [], color="0.3", label=label)


@styled
def plot_trust_region(res: Results) -> Figure:
    """Six diagnostics of the natural-gradient step (pooled over tasks)."""
    fig, axes = panels(6, ncols_max=3, panel=(4.0, 3.1))
    by = trust_region_axis(natural_rows(res.metrics))
    plot_kl_vs_delta(res, by=by, ax=axes[0])
    plot_step_size(res, by=by, ax=axes[1])
    plot_step_fraction(res, by=by, ax=axes[2])
    plot_backtracks(res, ax=axes[3])
    plot_cg_residual(res, by=by, ax=axes[4])
    plot_backtrack_share(res, by=by, ax=axes[5])
    _one_legend_for_long_labels(fig, axes)
    caption(fig, ["Pooled over tasks and runs of the methods that solve for the natural gradient with CG. "
                  f"Dots: single updates (a random sample of at most {MAX_DOTS // 4} per "
                  f"{'δ' if by == 'max_kl' else summary.AXIS_TITLES.get(by, by)} value, {MAX_DOTS} for CG), "
                  "or single runs where the panel title says so; markers with bars: median and 5th-95th "
                  f"percentile of all updates, unless the panel title says {CI_LABEL} (over runs).",
                  res.identical_note()])
    return fig


@styled
def plot_surrogate(res: Results) -> Figure:
    """A panel per task: predicted (gᵀΔθ) against actual surrogate improvement.

    Each (task, algorithm) shows at most MAX_DOTS updates, drawn at random.
    """
    rng = np.random.default_rng(res.seed)
    rows = finite(res.metrics, "policy/surrogate_expected", "policy/surrogate_actual")
    tasks = summary.sorted_values(rows["env_id"]) if len(rows) else []
    fig, axes = panels(len(tasks))
    algos = summary.sorted_values(rows["algo"]) if len(rows) else []
    for ax, task in zip(axes, tasks):
        r = rows[rows["env_id"] == task]
        for algo in algos:
            a = subsample(r[r["algo"] == algo], MAX_DOTS, rng)
            rejected = a["policy/accepted"].eq(0) if "policy/accepted" in a else pd.Series(False, index=a.index)
            ax.scatter(a.loc[~rejected, "policy/surrogate_expected"], a.loc[~rejected, "policy/surrogate_actual"],
                       s=6, alpha=max(0.2, dot_alpha(len(a))), color=algo_color(algo), linewidths=0)
            if rejected.any():
                ax.scatter(a.loc[rejected, "policy/surrogate_expected"], a.loc[rejected, "policy/surrogate_actual"],
                           s=16, marker="x", color=algo_color(algo), linewidths=0.8)
        lo = float(min(0, r["policy/surrogate_expected"].min()))
        hi = float(r["policy/surrogate_expected"].max())
        ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1)
        ax.axhline(0, color="0.5", linewidth=0.6)
        ax.set_title(task)
        ax.set_xlabel("predicted improvement gᵀΔθ")
        ax.set_ylabel("actual surrogate improvement")
    if not tasks:
        no_data(axes[0], "surrogate improvement")
    styles = mark_identical({algo_label(a): SeriesStyle(algo_label(a), algo_color(a)) for a in algos},
                            res.identical_everywhere())
    handles = [Line2D([], [], color=s.color, marker="o", linestyle="none", label=s.label) for s in styles.values()]
    handles.append(Line2D([], [], color="black", linestyle="--", label="actual = predicted"))
    if "policy/accepted" in rows and rows["policy/accepted"].eq(0).any():
        handles.append(Line2D([], [], color="0.3", marker="x", linestyle="none", label="step rejected"))
    legend_top(fig, handles)
    caption(fig, [res.identical_note()])
    return fig


