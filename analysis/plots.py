"""Paper figures from run stores.

Plot functions take data and ``ax=None`` and return the ax; multi-panel ones
return a Figure. Figures are built on ``matplotlib.figure.Figure`` (no pyplot
state; PNG is rendered by Agg) and written by ``save_figure`` only. Bands and
error bars are 95% percentile-bootstrap confidence intervals over runs, never
standard deviations. ``make_all`` writes every figure the data supports.
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullLocator

from analysis import stats, summary
from analysis.load import RunStore, load_store
from analysis.summary import RETURN, algo_label, format_steps, format_value
from trpo_bench.rundir import atomic_write_bytes

# ---------------------------------------------------------------------------
# Style
# ---------------------------------------------------------------------------

_CB = sns.color_palette("colorblind").as_hex()  # Okabe-Ito-like, colour-blind safe
ALGO_COLORS = {"trpo": _CB[0], "npg": _CB[1], "pg": _CB[2]}
# Line styles as well, so coinciding curves (TRPO = NPG when the line search
# never backtracks) stay visible, and for greyscale print. ":" marks partial curves.
ALGO_LINESTYLES = {"trpo": "-", "npg": "--", "pg": "-."}
_EXTRA_COLORS = [_CB[i] for i in (4, 5, 8, 9, 6)]
# Greys for the time components, so they never read as an algorithm colour.
COMPONENT_COLORS = {
    "time/collect": "#3b3b3b",
    "time/policy_update": "#8c8c8c",
    "time/value_fit": "#c8c8c8",
    "other": "#ffffff",
}
COMPONENT_LABELS = {
    "time/collect": "collect rollouts",
    "time/policy_update": "policy update",
    "time/value_fit": "value fit",
    "other": "other (logging, checkpoints)",
}
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v"]
PAPER_RC = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "savefig.dpi": 150,
    "pdf.fonttype": 42,  # TrueType: text stays editable in the PDF
    "ps.fonttype": 42,
}
PANEL = (3.4, 2.6)  # inches per panel
NOTE_SIZE = 7.5
CI_LABEL = "95% bootstrap CI"


def paper_style():
    """Context manager applying PAPER_RC."""
    return mpl.rc_context(PAPER_RC)


def _styled(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with paper_style():
            return fn(*args, **kwargs)

    return wrapper


def algo_color(algo: str) -> str:
    """Fixed colour per algorithm; unknown names get a stable extra colour."""
    if algo in ALGO_COLORS:
        return ALGO_COLORS[algo]
    return _EXTRA_COLORS[sum(map(ord, str(algo))) % len(_EXTRA_COLORS)]


def value_colors(values: Sequence[Any]) -> dict[Any, tuple]:
    """Sequential colours (viridis, yellow end cut) for ordered axis values."""
    cmap = mpl.colormaps["viridis"]
    if len(values) == 1:
        return {values[0]: cmap(0.35)}
    return {v: cmap(x) for v, x in zip(values, np.linspace(0.05, 0.8, len(values)))}


@dataclass(frozen=True)
class SeriesStyle:
    label: str
    color: Any
    linestyle: str = "-"
    marker: str = "o"


def method_styles(frame: pd.DataFrame, methods: Sequence[str]) -> dict[str, SeriesStyle]:
    """Hue by algorithm; methods of one algorithm get light-to-dark shades of it,
    and distinct line styles and markers."""
    algo_of = frame.drop_duplicates("method").set_index("method")["algo"].to_dict()
    groups: dict[str, list[str]] = {}
    for m in methods:
        groups.setdefault(algo_of.get(m, m), []).append(m)
    out = {}
    for algo, members in groups.items():
        base = np.asarray(mpl.colors.to_rgb(algo_color(algo)))
        # Blend towards white: up to 55% for the first of several methods, 0 for the last.
        for k, m in enumerate(members):
            t = 0.55 * (len(members) - 1 - k) / max(len(members) - 1, 1)
            out[m] = SeriesStyle(m, tuple(base + (1 - base) * t), LINESTYLES[k % len(LINESTYLES)],
                                 MARKERS[k % len(MARKERS)])
    return {m: out[m] for m in methods}


def hue_styles(hue: str, values: Sequence[Any]) -> dict[Any, SeriesStyle]:
    if hue == "algo":
        return {v: SeriesStyle(algo_label(v), algo_color(v), ALGO_LINESTYLES.get(v, "-")) for v in values}
    colors = value_colors(list(values))
    return {v: SeriesStyle(summary.axis_value_label(hue, v), colors[v], "-", MARKERS[i % len(MARKERS)])
            for i, v in enumerate(values)}


# ---------------------------------------------------------------------------
# Layout helpers
# ---------------------------------------------------------------------------


def _panels(n: int, ncols_max: int = 3, panel: tuple[float, float] = PANEL) -> tuple[Figure, list[Axes]]:
    """Figure with ``n`` axes on a grid; surplus grid cells are removed."""
    n = max(n, 1)
    ncols = min(n, ncols_max)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows + 0.5), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _legend_top(fig: Figure, handles: list) -> None:
    """Figure legend above the panels, as many columns as fit, read row by row."""
    labels = [h.get_label() for h in handles]
    width = [0.062 * len(label) + 0.75 for label in labels]  # inches at 9 pt, handle included
    room = fig.get_size_inches()[0] - 0.2
    ncols = 1
    for k in range(len(handles), 0, -1):
        cols = [max(width[i::k]) for i in range(k)]
        if sum(cols) <= room:
            ncols = k
            break
    nrows = math.ceil(len(handles) / ncols)
    # Matplotlib fills legend columns first; reorder so rows read left to right.
    order = [r * ncols + c for c in range(ncols) for r in range(nrows) if r * ncols + c < len(handles)]
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside upper center", ncols=ncols)


def caption(fig: Figure, lines: Iterable[str], width_chars: int | None = None) -> None:
    """Small-print notes under the panels; the layout leaves room for them."""
    lines = [ln for ln in lines if ln]
    if not lines:
        return
    w, h = fig.get_size_inches()
    width_chars = width_chars or max(40, int(w * 15))
    wrapped = [seg for ln in lines for seg in textwrap.wrap(ln, width_chars, subsequent_indent="  ")]
    height = (len(wrapped) * NOTE_SIZE * 1.35 + 8) / 72.0
    fig.set_size_inches(w, h + height)
    frac = height / (h + height)
    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set"):
        engine.set(rect=(0, frac, 1, 1 - frac))
    fig.text(0.01, frac - 2 / 72 / (h + height), "\n".join(wrapped), ha="left", va="top",
             fontsize=NOTE_SIZE, color="0.25", linespacing=1.35)


def panel_note(ax: Axes, lines: Sequence[str], loc: str = "lower right") -> None:
    """Notes inside one panel (e.g. how many seeds reached the end)."""
    if not lines:
        return
    x, ha = (0.98, "right") if "right" in loc else (0.02, "left")
    y, va = (0.03, "bottom") if "lower" in loc else (0.97, "top")
    ax.text(x, y, "\n".join(lines), transform=ax.transAxes, ha=ha, va=va, fontsize=NOTE_SIZE, color="0.2",
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "0.8", "alpha": 0.85})


def _steps_formatter() -> FuncFormatter:
    return FuncFormatter(lambda v, _: format_steps(v) if v else "0")


def _value_ticks(ax: Axes, values: Sequence[float], log: bool) -> None:
    if log:
        ax.set_xscale("log")
    ax.set_xticks(list(values))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v)))
    ax.xaxis.set_minor_locator(NullLocator())


def use_log_axis(axis: str, values: Sequence[float]) -> bool:
    """Log scale for δ always; for other axes when positive values span >= 8x."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if axis == "max_kl":
        return bool(v.size and (v > 0).all())
    return bool(v.size > 1 and (v > 0).all() and v.max() / v.min() >= 8)


def _log_y(ax: Axes) -> None:
    """Log y axis with plain tick labels (0.02, 0.05) unless it spans >= 3 decades."""
    ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    lo, hi = ax.get_ylim()
    if lo <= 0 or hi / lo >= 1e3:
        return
    # Under a decade a log locator may leave one tick in view: space them evenly instead.
    locator = mpl.ticker.MaxNLocator(4) if hi / lo < 10 else mpl.ticker.LogLocator(subs=(1.0, 2.0, 5.0))
    ax.yaxis.set_major_locator(locator)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))


def _time_scale(seconds: float) -> tuple[float, str]:
    if seconds >= 3 * 3600:
        return 3600.0, "h"
    if seconds >= 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


# ---------------------------------------------------------------------------
# 1. Learning curves
# ---------------------------------------------------------------------------


@_styled
def plot_curve_panel(
    curves: pd.DataFrame, styles: Mapping[Any, SeriesStyle], *, x_scale: float = 1.0, ax: Axes | None = None
) -> Axes:
    """One task's curves from ``summary.curve_table`` rows.

    Per hue value: a line for the estimate (solid while every run has data,
    dotted where fewer do) and a shaded band for its CI.
    """
    ax = ax if ax is not None else Figure().subplots()
    for h, style in styles.items():
        c = curves[[summary.same_value(v, h) for v in curves["hue"]]]
        if c.empty:
            continue
        x = c["x"].to_numpy(dtype=float) / x_scale
        est = c["estimate"].to_numpy(dtype=float)
        full = c["n"].to_numpy() >= c["n_runs"].to_numpy()
        ax.fill_between(x, c["ci_low"].to_numpy(dtype=float), c["ci_high"].to_numpy(dtype=float),
                        color=style.color, alpha=0.2, linewidth=0)
        ax.plot(x, np.where(full, est, np.nan), color=style.color, linestyle=style.linestyle, label=style.label)
        if not full.all():
            # Continue dotted past the point where the first run stops (and one point
            # back, so the two segments join).
            partial = ~full | np.r_[~full[1:], False]
            ax.plot(x, np.where(partial, est, np.nan), color=style.color, linestyle=":", linewidth=1.2)
    return ax


@_styled
def plot_learning_curves(
    metrics: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    *,
    hue: str = "algo",
    x: str = "env_steps",
    metric: str = RETURN,
    statistic: str = "mean",
    n_points: int = 100,
    reps: int = stats.DEFAULT_REPS,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """A panel per task, one curve per ``hue`` value with its bootstrap CI band.

    metrics: tidy rows (load.RunStore.metrics); runs: the runs table, used to
    note runs that stopped early or logged nothing. x: "env_steps" or "time/wall".
    """
    table = summary.curve_table(metrics, hue=hue, x=x, metric=metric, n_points=n_points,
                                statistic=statistic, reps=reps, seed=seed)
    tasks = summary.sorted_values(table["env_id"]) if len(table) else []
    fig, axes = _panels(len(tasks))
    values = summary.sorted_values(table["hue"]) if len(table) else []
    styles = hue_styles(hue, values)
    scale, unit = (1.0, "") if x == "env_steps" else _time_scale(float(table["x"].max()) if len(table) else 1.0)
    any_partial = False
    stat_name = "IQM" if statistic == "iqm" else "mean"
    for ax, task in zip(axes, tasks):
        curves = table[table["env_id"] == task]
        plot_curve_panel(curves, styles, x_scale=scale, ax=ax)
        any_partial |= bool((curves["n"] < curves["n_runs"]).any())
        ax.set_title(f"{task} · {title}" if title else task)
        if x == "env_steps":
            ax.xaxis.set_major_formatter(_steps_formatter())
            ax.set_xlabel("environment steps")
        else:
            ax.set_xlabel(f"wall-clock time ({unit})")
        ax.set_ylabel(f"{stat_name} {_metric_label(metric)}")
        if runs is not None and x == "env_steps":
            task_runs = runs[(runs["env_id"] == task) & runs[hue].isin(values)] if hue in runs else runs.iloc[:0]
            panel_note(ax, summary.coverage_notes(task_runs, hue, lambda v: styles[v].label if v in styles else str(v)))
    if not tasks:
        axes[0].text(0.5, 0.5, f"no {metric} data", ha="center", va="center", transform=axes[0].transAxes)
    handles = [Line2D([], [], color=s.color, linestyle=s.linestyle, label=s.label) for s in styles.values()]
    handles.append(Patch(facecolor="0.5", alpha=0.3, label=CI_LABEL))
    if any_partial:
        handles.append(Line2D([], [], color="0.4", linestyle=":", label="not all runs reach here"))
    _legend_top(fig, handles)
    return fig


def _metric_label(metric: str) -> str:
    return {
        RETURN: "episode return (training)",
        "eval/return_mean": "episode return (evaluation)",
    }.get(metric, metric)


# ---------------------------------------------------------------------------
# 2. Ablations
# ---------------------------------------------------------------------------


@_styled
def plot_ablation_panel(
    final: pd.DataFrame,
    axis: str,
    styles: Mapping[str, SeriesStyle],
    *,
    statistic: str = "mean",
    reps: int = stats.DEFAULT_REPS,
    seed: int = 0,
    ax: Axes | None = None,
) -> Axes:
    """Final return against ``axis`` for one task: a series per method.

    final: summary.final_scores rows with a "series" column keyed like ``styles``.
    Points are the ``statistic`` over finished runs with 95% bootstrap CIs;
    dots are the individual runs.
    """
    ax = ax if ax is not None else Figure().subplots()
    fn = {"mean": stats.mean, "iqm": stats.iqm}[statistic]
    ok = final[summary.usable(final)]
    xs_all = sorted(pd.to_numeric(final[axis], errors="coerce").dropna().unique())
    log = use_log_axis(axis, xs_all)
    n_series = max(len(styles), 1)
    for k, (series, style) in enumerate(styles.items()):
        rows = ok[ok["series"] == series]
        xs, est, lo, hi = [], [], [], []
        for xv in xs_all:
            v = rows.loc[np.isclose(rows[axis].astype(float), xv), "final"].to_numpy(dtype=float)
            if v.size == 0:
                continue
            iv = stats.stratified_bootstrap(v[:, None], fn, reps=reps, seed=stats.keyed_rng(seed, series, float(xv)))
            xs.append(xv)
            est.append(float(iv.point))
            lo.append(float(iv.low))
            hi.append(float(iv.high))
        if not xs:
            continue
        # Offset series slightly along x so error bars do not overlap.
        shift = (k - (n_series - 1) / 2) * 0.06
        xp = np.asarray(xs) * 10**shift if log else np.asarray(xs) + shift * _span(xs_all)
        est_a = np.asarray(est)
        ax.errorbar(xp, est_a, yerr=[est_a - np.asarray(lo), np.asarray(hi) - est_a], color=style.color,
                    linestyle=style.linestyle, marker=style.marker, capsize=3, markersize=5, label=style.label)
        # Runs as dots just right of their error bar.
        pts = rows[axis].astype(float).to_numpy()
        pts = pts * 10 ** (shift + 0.025) if log else pts + (shift + 0.025) * _span(xs_all)
        ax.scatter(pts, rows["final"], color=style.color, s=10, alpha=0.45, linewidths=0, zorder=1)
    _value_ticks(ax, xs_all, log)
    ax.set_xlabel(summary.AXIS_TITLES.get(axis, axis) + (", log scale" if log else ""))
    ax.set_ylabel("final return")
    return ax


def _span(values: Sequence[float]) -> float:
    return float(max(values) - min(values)) if len(values) > 1 else 1.0


@_styled
def plot_ablation(
    final: pd.DataFrame,
    axis: str,
    *,
    other_axes: Sequence[str] = (),
    statistic: str = "mean",
    reps: int = stats.DEFAULT_REPS,
    seed: int = 0,
    fraction: float = stats.DEFAULT_FINAL_FRACTION,
) -> Figure:
    """A panel per task: final return against ``axis``, a series per algorithm
    (and per value of ``other_axes``, which are never pooled)."""
    final = final[pd.to_numeric(final[axis], errors="coerce").notna()]
    final = summary.with_methods(final, [a for a in other_axes if a != axis]).rename(columns={"method": "series"})
    tasks = summary.sorted_values(final["env_id"])
    order = summary.method_order(final.rename(columns={"series": "method"}), other_axes)
    styles = method_styles(final.rename(columns={"series": "method"}), order)
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks):
        plot_ablation_panel(final[final["env_id"] == task], axis, styles, statistic=statistic, reps=reps,
                            seed=seed, ax=ax)
        ax.set_title(task)
    handles = [Line2D([], [], color=s.color, linestyle=s.linestyle, marker=s.marker, label=s.label)
               for s in styles.values()]
    handles.append(Line2D([], [], color="0.4", marker="o", linestyle="none", alpha=0.4, markersize=3,
                          label="individual runs"))
    _legend_top(fig, handles)
    notes = [f"Final return: mean of {RETURN} over the last {fraction:.0%} of each run's updates; "
             f"points: {statistic} over finished runs, error bars: {CI_LABEL}."]
    notes += summary.exclusion_notes(final.assign(method=final["series"] + ", " + final[axis].map(
        lambda v: summary.axis_value_label(axis, v))))
    caption(fig, notes)
    return fig


# ---------------------------------------------------------------------------
# 3. Trust-region diagnostics
# ---------------------------------------------------------------------------


def natural_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows of runs that ran conjugate gradient (the natural-gradient methods)."""
    if "policy/cg_iters" not in metrics:
        return metrics.iloc[:0]
    has_cg = metrics.groupby("run_id")["policy/cg_iters"].transform(lambda s: s.notna().any())
    return metrics[has_cg.astype(bool)]


def _finite(frame: pd.DataFrame, *cols: str) -> pd.DataFrame:
    if any(c not in frame for c in cols):
        return frame.iloc[:0]
    mask = np.ones(len(frame), bool)
    for c in cols:
        mask &= np.isfinite(pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float))
    return frame[mask]


MAX_DOTS = 1500  # per scatter series: enough to show the spread, small enough for a PDF


def _subsample(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``n`` rows of ``frame``, drawn without replacement."""
    return frame if len(frame) <= n else frame.iloc[np.sort(rng.choice(len(frame), n, replace=False))]


def _dot_alpha(n: int) -> float:
    """Opacity for n overlapping dots: faint for thousands, visible for a handful."""
    return float(np.clip(40.0 / max(n, 1), 0.12, 0.6))


def _no_data(ax: Axes, what: str) -> Axes:
    ax.text(0.5, 0.5, f"no {what} logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _setting_xlabel(by: str, log: bool) -> str:
    return ("δ (max KL)" if by == "max_kl" else summary.AXIS_TITLES.get(by, by)) + (", log scale" if log else "")


def _distribution_by(ax: Axes, rows: pd.DataFrame, column: str, by: str, rng: np.random.Generator) -> list[Any]:
    """Per (algo, value of ``by``): runs' per-update values as faint dots, median and 5-95% range."""
    algos = summary.sorted_values(rows["algo"])
    values = sorted(rows[by].astype(float).unique())
    log = use_log_axis(by, values)
    for k, algo in enumerate(algos):
        shift = _algo_offset(k, len(algos))
        color = algo_color(algo)
        med, lo, hi, xs = [], [], [], []
        for d in values:
            v = rows.loc[(rows["algo"] == algo) & np.isclose(rows[by].astype(float), d), column].to_numpy(float)
            v = v[v > 0]
            if v.size == 0:
                continue
            show = v if v.size <= MAX_DOTS // 4 else rng.choice(v, MAX_DOTS // 4, replace=False)
            x = _shifted(d, shift, log, values)
            jitter = _shifted(x, 10 ** rng.uniform(-0.02, 0.02, show.size), log, values)
            ax.scatter(jitter, show, s=4, color=color, alpha=_dot_alpha(show.size), linewidths=0)
            q5, q50, q95 = np.percentile(v, [5, 50, 95])
            xs.append(x)
            med.append(q50)
            lo.append(q50 - q5)
            hi.append(q95 - q50)
        if xs:
            ax.errorbar(xs, med, yerr=[lo, hi], color=color, marker="o", linestyle="none", capsize=3,
                        markersize=5, label=algo_label(algo))
    _setting_axis(ax, by, values, log)
    return values


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
    _value_ticks(ax, values, log=log)
    if log:
        ax.set_xlim(min(values) / 2.5, max(values) * 2.5)
    else:
        pad = 0.15 * ((max(values) - min(values)) or 1.0)
        ax.set_xlim(min(values) - pad, max(values) + pad)
    ax.set_xlabel(_setting_xlabel(by, log))


@_styled
def plot_kl_vs_delta(metrics: pd.DataFrame, *, by: str = "max_kl", seed: int = 0, ax: Axes | None = None) -> Axes:
    """Measured KL(π_old‖π_new) after each update against δ (or another setting, ``by``, at
    a fixed δ), with the line KL = δ.

    Dots: individual updates; markers and bars: median and 5th-95th percentile.
    """
    ax = ax if ax is not None else Figure().subplots()
    rows = _finite(natural_rows(metrics), "policy/kl", "max_kl", by)
    if rows.empty:
        return _no_data(ax, "KL with δ")
    values = _distribution_by(ax, rows, "policy/kl", by, np.random.default_rng(seed))
    if by == "max_kl":
        d = np.asarray(values)
        ax.hlines(d, d / 10**0.25, d * 10**0.25, color="black", linestyle="--", linewidth=1.2, label="KL = δ", zorder=3)
    else:
        bounds = sorted(rows["max_kl"].astype(float).unique())
        for d in bounds:
            ax.axhline(d, color="black", linestyle="--", linewidth=1.2, zorder=3,
                       label="KL = δ" if len(bounds) == 1 else f"KL = δ = {format_value(d)}")
    _log_y(ax)
    ax.set_ylabel("KL after update (mean over states)")
    ax.set_title("measured KL against δ" if by == "max_kl" else
                 f"measured KL against {summary.AXIS_LABELS.get(by, by)}")
    # KL grows with δ, so the points run from lower left to upper right: keep the legend
    # in the empty upper-left corner when δ varies.
    ax.legend(loc="upper left" if by == "max_kl" and len(values) > 1 else "lower left")
    return ax


@_styled
def plot_step_size(metrics: pd.DataFrame, *, by: str = "max_kl", seed: int = 0, ax: Axes | None = None) -> Axes:
    """Step size β = √(2δ / sᵀFs) per update, distribution per δ (or ``by``) and algorithm."""
    ax = ax if ax is not None else Figure().subplots()
    rows = _finite(natural_rows(metrics), "policy/step_size", by)
    if rows.empty:
        return _no_data(ax, "step size")
    _distribution_by(ax, rows, "policy/step_size", by, np.random.default_rng(seed + 1))
    _log_y(ax)
    ax.set_ylabel("step size β")
    ax.set_title("full-step size β")
    # β grows with δ (upper left is empty then); a finer CG solve shrinks it.
    ax.legend(loc="upper left" if by == "max_kl" else "upper right")
    return ax


def _mean_with_ci(values: np.ndarray, reps: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean of per-run values (R,) and the distances from it to its 95% bootstrap CI bounds."""
    iv = stats.stratified_bootstrap(values[:, None], stats.mean, reps=reps, seed=rng)
    return float(iv.point), float(iv.point - iv.low), float(iv.high - iv.point)


@_styled
def plot_step_fraction(
    metrics: pd.DataFrame, *, by: str = "max_kl", reps: int = stats.DEFAULT_REPS, seed: int = 0,
    ax: Axes | None = None,
) -> Axes:
    """Mean accepted fraction of the full step (0 when rejected) per δ (or ``by``), 95% CI over runs."""
    ax = ax if ax is not None else Figure().subplots()
    rows = _finite(natural_rows(metrics), "policy/step_fraction", by)
    if rows.empty:
        return _no_data(ax, "step fraction")
    per_run = rows.groupby(["algo", by, "run_id"], sort=False)["policy/step_fraction"].mean().reset_index()
    values = sorted(per_run[by].astype(float).unique())
    log = use_log_axis(by, values)
    algos = summary.sorted_values(per_run["algo"])
    for k, algo in enumerate(algos):
        shift = _algo_offset(k, len(algos))
        xs, est, lo, hi = [], [], [], []
        for value in values:
            v = per_run.loc[(per_run["algo"] == algo) & np.isclose(per_run[by].astype(float), value), "policy/step_fraction"]
            if v.empty:
                continue
            point, err_lo, err_hi = _mean_with_ci(v.to_numpy(float), reps, stats.keyed_rng(seed, algo, float(value)))
            xs.append(_shifted(value, shift, log, values))
            est.append(point)
            lo.append(err_lo)
            hi.append(err_hi)
        ax.errorbar(xs, est, yerr=[lo, hi], color=algo_color(algo), marker="o", capsize=3, label=algo_label(algo))
    _setting_axis(ax, by, values, log)
    ax.set_ylim(-0.03, 1.08)
    ax.set_ylabel("accepted fraction of full step")
    ax.set_title(f"accepted step fraction ({CI_LABEL})")
    ax.legend(loc="lower left")
    return ax


@_styled
def plot_backtracks(metrics: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Share of updates by number of line-search backtracks, per algorithm."""
    ax = ax if ax is not None else Figure().subplots()
    rows = _finite(metrics, "policy/backtracks")
    if rows.empty:
        return _no_data(ax, "line search")
    algos = summary.sorted_values(rows["algo"])
    top = int(rows["policy/backtracks"].max())
    counts = np.arange(top + 1)
    width = 0.8 / len(algos)
    for k, algo in enumerate(algos):
        b = rows.loc[rows["algo"] == algo, "policy/backtracks"].astype(int).to_numpy()
        share = np.bincount(b, minlength=top + 1) / b.size
        ax.bar(counts + (k - (len(algos) - 1) / 2) * width, share, width=width, color=algo_color(algo),
               label=algo_label(algo))
    ax.set_xticks(counts)
    ax.grid(axis="x", visible=False)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the legend above the bars
    ax.set_xlabel("backtracks in the update's line search")
    ax.set_ylabel("share of updates")
    ax.set_title("backtracks per update")
    ax.legend(loc="upper right")
    return ax


@_styled
def plot_cg_residual(metrics: pd.DataFrame, *, seed: int = 0, ax: Axes | None = None) -> Axes:
    """Final CG residual against CG iterations run, per update (log y): relative to the
    right-hand side, ‖g − F̃x‖ / ‖g‖, where the gradient norm is logged. Medians are per CG
    budget (the ``cg_iters`` setting) when it is known, so a budget whose solves sometimes
    stop early at the tolerance still gets one marker."""
    ax = ax if ax is not None else Figure().subplots()
    rows = _finite(metrics, "policy/cg_iters", "policy/cg_residual")
    rows = rows[rows["policy/cg_residual"] > 0]
    relative = "policy/grad_norm" in rows and bool((rows["policy/grad_norm"] > 0).all())
    rows = rows.assign(_res=rows["policy/cg_residual"] / rows["policy/grad_norm"] if relative
                       else rows["policy/cg_residual"])
    rows = rows[np.isfinite(rows["_res"])]
    if rows.empty:
        return _no_data(ax, "CG residual")
    budget = "cg_iters" if "cg_iters" in rows and rows["cg_iters"].notna().all() else "policy/cg_iters"
    rng = np.random.default_rng(seed)
    algos = summary.sorted_values(rows["algo"])
    ticks = sorted(rows[budget].astype(float).unique())
    for k, algo in enumerate(algos):
        r = rows[rows["algo"] == algo]
        shift = (k - (len(algos) - 1) / 2) * 0.12
        med = r.groupby(budget)["_res"].median()
        r = _subsample(r, MAX_DOTS, rng)
        x = r["policy/cg_iters"].to_numpy(float)
        ax.scatter(x * (1 + shift * 0.3) * 10 ** rng.uniform(-0.015, 0.015, x.size), r["_res"],
                   s=4, color=algo_color(algo), alpha=_dot_alpha(x.size), linewidths=0)
        ax.plot(med.index.to_numpy(float) * (1 + shift * 0.3), med.to_numpy(), color=algo_color(algo), marker="o",
                linestyle="none", label=f"{algo_label(algo)} (median{' per CG budget' if len(ticks) > 1 else ''})")
    _value_ticks(ax, ticks, log=len(ticks) > 1 and max(ticks) / max(min(ticks), 1) >= 4)
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] - 1, ticks[0] + 1)
    _log_y(ax)
    ax.set_xlabel("CG iterations run")
    ax.set_ylabel("final CG residual ‖g − F̃x‖ / ‖g‖" if relative else "final CG residual ‖r‖")
    ax.set_title("conjugate-gradient residual")
    ax.legend(loc="upper right")
    return ax


@_styled
def plot_backtrack_share(
    metrics: pd.DataFrame, *, by: str = "max_kl", reps: int = stats.DEFAULT_REPS, seed: int = 0,
    ax: Axes | None = None,
) -> Axes:
    """Share of updates whose line search backtracked, per task and value of ``by`` (δ
    unless another setting is the one ablated), with a 95% CI over runs."""
    ax = ax if ax is not None else Figure().subplots()
    rows = _finite(metrics, "policy/backtracks", by)
    if rows.empty:
        return _no_data(ax, "line search")
    per_run = (rows.assign(backtracked=rows["policy/backtracks"] > 0)
               .groupby(["env_id", "algo", by, "run_id"], sort=False)["backtracked"].mean().reset_index())
    tasks = summary.sorted_values(per_run["env_id"])
    combos = [(a, float(v)) for a, v in per_run[["algo", by]].drop_duplicates().itertuples(index=False)]
    combos = sorted(combos, key=lambda c: (summary.sort_key(c[0]), c[1]))
    multi_algo = len({a for a, _ in combos}) > 1
    colors = value_colors(sorted({v for _, v in combos}))
    width = 0.8 / len(combos)
    for k, (algo, value) in enumerate(combos):
        est, err_lo, err_hi = [], [], []
        for task in tasks:
            v = per_run.loc[(per_run["env_id"] == task) & (per_run["algo"] == algo)
                            & np.isclose(per_run[by].astype(float), value), "backtracked"].to_numpy(float)
            if v.size == 0:
                est.append(np.nan), err_lo.append(0), err_hi.append(0)
                continue
            point, lo, hi = _mean_with_ci(v, reps, stats.keyed_rng(seed, task, algo, value))
            est.append(point)
            err_lo.append(lo)
            err_hi.append(hi)
        label = summary.axis_value_label(by, value)
        label = f"{algo_label(algo)}, {label}" if multi_algo else label
        ax.bar(np.arange(len(tasks)) + (k - (len(combos) - 1) / 2) * width, est, width=width,
               color=colors[value], edgecolor=algo_color(algo) if multi_algo else "none",
               yerr=[err_lo, err_hi], capsize=2, error_kw={"elinewidth": 0.8}, label=label)
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.grid(axis="x", visible=False)
    if not (per_run["backtracked"] > 0).any():
        panel_note(ax, ["no update backtracked"], loc="lower left")
    # Headroom above 1 for the legend, so it never covers a bar.
    rows = math.ceil(len(combos) / min(len(combos), 3))
    ax.set_ylim(0, 1.05 + 0.12 * rows)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("share of updates that backtracked")
    ax.set_title(f"line search backtracked ({CI_LABEL})")
    ax.legend(loc="upper center", ncols=min(len(combos), 3), handlelength=1.2, columnspacing=1.0)
    return ax


def _trust_region_axis(metrics: pd.DataFrame) -> str:
    """The setting the trust-region panels are drawn against: δ, unless δ is fixed and another
    trust-region setting varies (a CG-iterations, damping or line-search ablation)."""
    def varies(col: str) -> bool:
        return col in metrics and metrics[col].nunique(dropna=True) > 1
    if varies("max_kl"):
        return "max_kl"
    return next((c for c in ("cg_iters", "cg_damping", "backtrack_coef") if varies(c)), "max_kl")


@_styled
def plot_trust_region(metrics: pd.DataFrame, *, reps: int = stats.DEFAULT_REPS, seed: int = 0) -> Figure:
    """Six diagnostics of the natural-gradient step (pooled over tasks)."""
    fig, axes = _panels(6, ncols_max=3, panel=(4.0, 3.1))
    by = _trust_region_axis(metrics)
    plot_kl_vs_delta(metrics, by=by, seed=seed, ax=axes[0])
    plot_step_size(metrics, by=by, seed=seed, ax=axes[1])
    plot_step_fraction(metrics, by=by, reps=reps, seed=seed, ax=axes[2])
    plot_backtracks(metrics, ax=axes[3])
    plot_cg_residual(metrics, seed=seed, ax=axes[4])
    plot_backtrack_share(metrics, by=by, reps=reps, seed=seed, ax=axes[5])
    caption(fig, ["Pooled over tasks and runs of the methods that solve for the natural gradient with CG. "
                  f"Dots: single updates (a random sample of at most {MAX_DOTS // 4} per "
                  f"{'δ' if by == 'max_kl' else summary.AXIS_TITLES.get(by, by)} value, {MAX_DOTS} for CG); "
                  "markers with bars: median and 5th-95th percentile of all updates, unless the panel title "
                  f"says {CI_LABEL} (over runs)."])
    return fig


@_styled
def plot_surrogate(metrics: pd.DataFrame, *, seed: int = 0) -> Figure:
    """A panel per task: predicted (gᵀΔθ) against actual surrogate improvement.

    Each (task, algorithm) shows at most MAX_DOTS updates, drawn at random.
    """
    rng = np.random.default_rng(seed)
    rows = _finite(metrics, "policy/surrogate_expected", "policy/surrogate_actual")
    tasks = summary.sorted_values(rows["env_id"]) if len(rows) else []
    fig, axes = _panels(len(tasks))
    algos = summary.sorted_values(rows["algo"]) if len(rows) else []
    for ax, task in zip(axes, tasks):
        r = rows[rows["env_id"] == task]
        for algo in algos:
            a = _subsample(r[r["algo"] == algo], MAX_DOTS, rng)
            rejected = a["policy/accepted"].eq(0) if "policy/accepted" in a else pd.Series(False, index=a.index)
            ax.scatter(a.loc[~rejected, "policy/surrogate_expected"], a.loc[~rejected, "policy/surrogate_actual"],
                       s=6, alpha=max(0.2, _dot_alpha(len(a))), color=algo_color(algo), linewidths=0)
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
        _no_data(axes[0], "surrogate improvement")
    handles = [Line2D([], [], color=algo_color(a), marker="o", linestyle="none", label=algo_label(a)) for a in algos]
    handles.append(Line2D([], [], color="black", linestyle="--", label="actual = predicted"))
    if "policy/accepted" in rows and rows["policy/accepted"].eq(0).any():
        handles.append(Line2D([], [], color="0.3", marker="x", linestyle="none", label="step rejected"))
    _legend_top(fig, handles)
    return fig


# ---------------------------------------------------------------------------
# 4. Aggregates across tasks (rliable)
# ---------------------------------------------------------------------------


def _interval_row(ax: Axes, y: float, iv: stats.Interval, color: Any) -> None:
    """A CI as a bar (kept visible when it has zero width) with the point as a tick."""
    lo, hi, point = float(iv.low), float(iv.high), float(iv.point)
    (bar,) = ax.barh(y, hi - lo, left=lo, height=0.6, color=color, alpha=0.75, edgecolor=color, linewidth=1.2)
    bar.sticky_edges.x.clear()  # let axis margins pad around the interval
    ax.plot([point], [y], marker="|", markersize=16, markeredgewidth=2, color="black", linestyle="none")


@_styled
def plot_interval_estimates(
    intervals: Mapping[str, stats.Interval], styles: Mapping[str, SeriesStyle], *, ax: Axes | None = None
) -> Axes:
    """Horizontal CI bars with a tick at the point estimate, one row per method."""
    ax = ax if ax is not None else Figure().subplots()
    methods = list(intervals)
    for i, m in enumerate(methods):
        iv = intervals[m]
        y = len(methods) - 1 - i
        _interval_row(ax, y, iv, styles[m].color)
    ax.set_yticks(range(len(methods)), list(reversed(methods)))
    ax.set_ylim(-0.6, len(methods) - 0.4)
    ax.grid(axis="y", visible=False)
    return ax


@_styled
def plot_aggregates(
    scores: Mapping[str, np.ndarray],
    styles: Mapping[str, SeriesStyle],
    *,
    reps: int = stats.DEFAULT_REPS,
    seed: int = 0,
) -> Figure:
    """IQM, median, mean and optimality gap of normalized scores, with
    stratified-bootstrap 95% CIs (rliable, paper Sec. 4.3, Fig. 9)."""
    names = list(stats.AGGREGATES)
    longest = max((len(m) for m in scores), default=4)
    fig = Figure(figsize=(2.6 * len(names) + 0.07 * longest, 0.45 * len(scores) + 1.3), layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names):
        fn = stats.AGGREGATES[name]
        intervals = {m: stats.stratified_bootstrap(s, fn, reps=reps, seed=stats.keyed_rng(seed, name, m))
                     for m, s in scores.items()}
        plot_interval_estimates(intervals, styles, ax=ax)
        ax.set_title(name)
        ax.set_xlabel("normalized gap, lower is better" if name == "Optimality gap" else "normalized score")
        ax.margins(x=0.12)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(4))
    return fig


@_styled
def plot_performance_profile(
    scores: Mapping[str, np.ndarray],
    styles: Mapping[str, SeriesStyle],
    taus: np.ndarray | None = None,
    *,
    reps: int = stats.DEFAULT_REPS,
    seed: int = 0,
    ax: Axes | None = None,
) -> Axes:
    """Fraction of runs with normalized score > τ, with CI bands (paper Sec. 4.2)."""
    ax = ax if ax is not None else Figure().subplots()
    if taus is None:
        allv = np.concatenate([s[np.isfinite(s)] for s in scores.values()]) if scores else np.zeros(1)
        taus = np.linspace(min(0.0, allv.min()), max(1.0, allv.max()), 81)
    for m, s in scores.items():
        iv = stats.performance_profile(s, taus, reps=reps, seed=stats.keyed_rng(seed, m))
        st = styles[m]
        ax.fill_between(taus, iv.low, iv.high, color=st.color, alpha=0.2, linewidth=0)
        ax.plot(taus, iv.point, color=st.color, linestyle=st.linestyle, label=st.label)
    ax.set_xlabel("normalized score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    return ax


def poi_pairs(
    methods: Sequence[str], attrs: Mapping[str, tuple] | None = None, all_pairs_up_to: int = 4
) -> list[tuple[str, str]]:
    """Pairs (X, Y), X earlier in ``methods``, to compare by probability of improvement.

    Up to ``all_pairs_up_to`` methods: every pair. Beyond that, with ``attrs``
    (method -> (algo, *axis values)): pairs that differ only in the algorithm,
    or, for a single algorithm, only in one axis value.
    """
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    if len(methods) <= all_pairs_up_to or attrs is None:
        return pairs

    def diff(a, b):
        return [k for k, (u, v) in enumerate(zip(attrs[a], attrs[b])) if u != v]

    across = [(a, b) for a, b in pairs if diff(a, b) == [0]]
    return across or [(a, b) for a, b in pairs if len(diff(a, b)) == 1]


@_styled
def plot_probability_of_improvement(
    scores: Mapping[str, np.ndarray],
    styles: Mapping[str, SeriesStyle],
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    reps: int = stats.DEFAULT_REPS,
    seed: int = 0,
    ax: Axes | None = None,
) -> Axes:
    """P(X > Y) with stratified-bootstrap 95% CIs, a row per pair (paper Sec. 4.3)."""
    ax = ax if ax is not None else Figure().subplots()
    pairs = list(pairs if pairs is not None else poi_pairs(list(scores)))
    for i, (a, b) in enumerate(pairs):
        iv = stats.stratified_bootstrap_pair(scores[a], scores[b], reps=reps, seed=stats.keyed_rng(seed, a, b))
        y = len(pairs) - 1 - i
        _interval_row(ax, y, iv, styles[a].color)
    ax.axvline(0.5, color="0.4", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(pairs)), [f"P({a} > {b})" for a, b in reversed(pairs)])
    ax.set_ylim(-0.6, len(pairs) - 0.4)
    ax.set_xlim(-0.04, 1.04)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("probability of improvement")
    return ax


# ---------------------------------------------------------------------------
# 5. Wall clock
# ---------------------------------------------------------------------------


def time_breakdown(metrics: pd.DataFrame, group: str = "method") -> pd.DataFrame:
    """Mean seconds per update in each component, per (env_id, group).

    "other" is the per-update wall time (diff of time/wall) not covered by the
    three measured components, clipped at 0.
    """
    comps = [c for c in ("time/collect", "time/policy_update", "time/value_fit") if c in metrics]
    if not comps:
        return pd.DataFrame()
    frame = metrics.sort_values(["run_id", "env_steps"], kind="stable")
    parts = frame[["env_id", group, *comps]].copy()
    if "time/wall" in frame:
        wall = frame.groupby("run_id", sort=False)["time/wall"].diff()
        parts["other"] = (wall - frame[comps].sum(axis=1, min_count=1)).clip(lower=0)
    return parts.groupby(["env_id", group], sort=False).mean().reset_index()


@_styled
def plot_time_breakdown(metrics: pd.DataFrame, order: Sequence[str] | None = None) -> Figure:
    """A panel per task: stacked mean seconds per update for each method."""
    table = time_breakdown(metrics)
    tasks = summary.sorted_values(table["env_id"]) if len(table) else []
    fig, axes = _panels(len(tasks))
    comps = [c for c in COMPONENT_COLORS if c in table]
    for ax, task in zip(axes, tasks):
        t = table[table["env_id"] == task].set_index("method")
        methods = [m for m in (order or t.index) if m in t.index]
        bottom = np.zeros(len(methods))
        for c in comps:
            v = t.loc[methods, c].fillna(0).to_numpy(float)
            ax.bar(range(len(methods)), v, bottom=bottom, color=COMPONENT_COLORS[c], edgecolor="0.2",
                   linewidth=0.6, hatch="//" if c == "other" else None, label=COMPONENT_LABELS[c])
            bottom += v
        ax.set_xticks(range(len(methods)), methods, rotation=30 if max(map(len, methods)) > 6 else 0,
                      ha="right" if max(map(len, methods)) > 6 else "center")
        ax.grid(axis="x", visible=False)
        ax.set_title(task)
        ax.set_ylabel("seconds per update (mean)")
    if not tasks:
        _no_data(axes[0], "timing")
    handles = [Patch(facecolor=COMPONENT_COLORS[c], edgecolor="0.2", hatch="//" if c == "other" else None,
                     label=COMPONENT_LABELS[c]) for c in comps]
    _legend_top(fig, handles)
    return fig


# ---------------------------------------------------------------------------
# Saving and the all-figures entry point
# ---------------------------------------------------------------------------


def save_figure(fig: Figure, out_dir: Path, name: str, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as <out_dir>/<name>.<fmt> for each format, atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with paper_style():
        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt)
            path = out_dir / f"{name}.{fmt}"
            atomic_write_bytes(path, buf.getvalue())
            paths.append(path)
    return paths


@dataclass
class FigureSpec:
    """A built figure, its file stem, a one-line caption and where it was saved."""

    name: str
    figure: Figure
    caption: str
    paths: list[Path] | None = None


def build_figures(
    store: RunStore,
    *,
    reps: int = stats.DEFAULT_REPS,
    seed: int = 0,
    reference_overrides: Mapping[str, Any] | None = None,
) -> Iterator[FigureSpec]:
    """Every figure one grid's data supports (see make_all)."""
    runs, metrics = store.runs, store.metrics
    if runs.empty:
        return
    ablate = summary.method_settings(runs, store.axes)
    final = summary.with_methods(summary.final_scores(store), ablate)
    metrics = summary.with_methods(metrics, ablate) if len(metrics) else metrics.assign(method=[])
    has_returns = RETURN in metrics and metrics[RETURN].notna().any()
    if has_returns and not ablate:
        yield FigureSpec("curves", plot_learning_curves(metrics, runs, reps=reps, seed=seed),
                         "Learning curves: training return against environment steps, mean over runs with "
                         f"{CI_LABEL}.")
        if "time/wall" in metrics and metrics["time/wall"].notna().any():
            yield FigureSpec("curves_walltime",
                             plot_learning_curves(metrics, runs, x="time/wall", reps=reps, seed=seed),
                             f"Training return against wall-clock time, mean over runs with {CI_LABEL}.")
    for axis in ablate:
        others = [a for a in ablate if a != axis]
        if summary.is_numeric_axis(runs, axis) and final[axis].notna().any() and summary.usable(final).any():
            yield FigureSpec(f"ablation_{axis}", plot_ablation(final, axis, other_axes=others, reps=reps, seed=seed),
                             f"Final return against {summary.AXIS_TITLES.get(axis, axis)}, per task.")
        if not has_returns:
            continue
        for algo in summary.algos_varying(runs, axis):
            sub = metrics[metrics["algo"] == algo]
            combos = sub[others].drop_duplicates().to_dict("records") if others else [{}]
            for combo in combos:
                part = sub
                for k, v in combo.items():
                    part = part[[summary.same_value(x, v) for x in part[k]]]
                suffix = "".join(f"_{k}={format_value(v)}" for k, v in combo.items())
                title = ", ".join([algo_label(algo), *(summary.axis_value_label(k, v) for k, v in combo.items())])
                part_runs = runs[runs["algo"] == algo]
                for k, v in combo.items():
                    part_runs = part_runs[[summary.same_value(x, v) for x in part_runs[k]]]
                yield FigureSpec(f"curves_{axis}_{algo}{suffix}",
                                 plot_learning_curves(part, part_runs, hue=axis, reps=reps, seed=seed, title=title),
                                 f"{title}: learning curves per {summary.AXIS_TITLES.get(axis, axis)}, mean over "
                                 f"runs with {CI_LABEL}.")
    methods = summary.method_order(final, ablate)
    scores, tasks, left_out = summary.normalized_scores(final, methods, reference_overrides)
    if scores and tasks:
        styles = method_styles(final, list(scores))
        note = _aggregate_note(tasks, left_out, final, reference_overrides)
        with paper_style():
            fig = plot_aggregates(scores, styles, reps=reps, seed=seed)
            caption(fig, note)
        yield FigureSpec("aggregate", fig, "Aggregate normalized final scores across tasks: IQM, median, mean and "
                         "optimality gap with stratified-bootstrap 95% CIs (Agarwal et al., 2021).")
        with paper_style():
            fig, axes = _panels(1, panel=(5.0, 3.4))
            plot_performance_profile(scores, styles, reps=reps, seed=seed, ax=axes[0])
            _legend_top(fig, [Line2D([], [], color=s.color, linestyle=s.linestyle, label=s.label)
                              for s in styles.values()]
                        + [Patch(facecolor="0.5", alpha=0.3, label=CI_LABEL + " (stratified)")])
            caption(fig, note)
        yield FigureSpec("performance_profile", fig, "Performance profiles: fraction of runs whose normalized final "
                         "score exceeds τ, with stratified-bootstrap 95% CIs.")
        if len(scores) >= 2:
            attrs = {r["method"]: (r["algo"], *(r[a] for a in ablate))
                     for r in final.drop_duplicates("method").to_dict("records")}
            pairs = poi_pairs(list(scores), attrs)
            longest = max(len(f"P({a} > {b})") for a, b in pairs)
            with paper_style():
                fig, axes = _panels(1, panel=(3.2 + 0.07 * longest, 0.4 * len(pairs) + 1.0))
                plot_probability_of_improvement(scores, styles, pairs, reps=reps, seed=seed, ax=axes[0])
                caption(fig, [f"Bars: {CI_LABEL} (stratified, runs of X and Y resampled independently)."] + note)
            yield FigureSpec("probability_of_improvement", fig,
                             "Probability that a run of X scores higher than a run of Y on a random task, "
                             "with stratified-bootstrap 95% CIs.")
    natural = natural_rows(metrics)
    if len(natural):
        yield FigureSpec("trust_region", plot_trust_region(natural, reps=reps, seed=seed),
                         "Trust-region diagnostics of the natural-gradient methods.")
    if len(_finite(metrics, "policy/surrogate_expected", "policy/surrogate_actual")):
        yield FigureSpec("surrogate", plot_surrogate(metrics, seed=seed),
                         "Predicted (first-order) against actual surrogate improvement per update.")
    if any(c in metrics for c in ("time/collect", "time/policy_update", "time/value_fit")) and len(metrics):
        yield FigureSpec("time_breakdown", plot_time_breakdown(metrics, methods),
                         "Where time goes: mean seconds per update by component.")


def _aggregate_note(tasks, left_out, final, overrides) -> list[str]:
    table = stats.reference_scores(overrides)
    refs = "; ".join(f"{t}: random {table[t].random:g}, reference {table[t].reference:g}" for t in tasks)
    notes = [f"Normalized score = (R - random) / (reference - random) with {refs}. "
             "Final return: mean over the last 10% of updates of finished runs."]
    if left_out:
        notes.append(f"Left out (no reference score): {', '.join(left_out)}.")
    excluded = int((~summary.usable(final)).sum())
    if excluded:
        notes.append(f"{excluded} run(s) unfinished or without a final score are not included (see report).")
    return notes


def grid_output_dirs(store: RunStore, out_dir: Path) -> dict[str, Path]:
    """Figures go to out_dir for a single grid, out_dir/<grid> for several."""
    names = store.grid_names
    return {g: Path(out_dir) if len(names) == 1 else Path(out_dir) / g for g in names}


def store_mtime(store: RunStore) -> float:
    """Newest modification time of the run files behind ``store`` (0 if none)."""
    times = [f.stat().st_mtime for d in store.runs.get("run_dir", []) for name in ("config.json", "status.json",
             "metrics.csv") if (f := Path(d) / name).is_file()]
    return max(times, default=0.0)


def write_figures(
    store: RunStore, out_dir: Path, *, reuse_if_newer: bool = False, **kwargs: Any
) -> dict[str, list[FigureSpec]]:
    """Build and save every supported figure per grid; returns specs with paths.

    reuse_if_newer: keep existing PNG/PDF files that are newer than every run
    file of the store instead of rendering them again.
    """
    written: dict[str, list[FigureSpec]] = {}
    for grid, d in grid_output_dirs(store, out_dir).items():
        sub = store.select_grid(grid)
        newest = store_mtime(sub) if reuse_if_newer else math.inf
        specs = []
        for spec in build_figures(sub, **kwargs):
            existing = [d / f"{spec.name}.{fmt}" for fmt in ("png", "pdf")]
            if all(p.is_file() and p.stat().st_mtime > newest for p in existing):
                spec.paths = existing
            else:
                spec.paths = save_figure(spec.figure, d, spec.name)
            spec.figure = None  # let the figure be collected
            specs.append(spec)
        written[grid] = specs
    return written


def make_all(runs_dirs: Sequence[Path], out_dir: Path, **kwargs: Any) -> list[Path]:
    """Write every figure the run stores under ``runs_dirs`` support; return the paths.

    Per grid: learning curves (env steps and wall time) when no axis but the
    algorithm varies; for each varying numeric axis, final return against it
    and learning curves per value; aggregate metrics, performance profile and
    probability of improvement on normalized scores; trust-region diagnostics
    and surrogate improvement when natural-gradient columns exist; time
    breakdown. PNG and PDF each.
    """
    store = load_store(runs_dirs)
    written = write_figures(store, out_dir, **kwargs)
    return [p for specs in written.values() for s in specs for p in (s.paths or [])]

