"""Figures across tasks on normalized scores (rliable), and where time goes, from ``results``.

No figure here is drawn for one run per group; under MIN_RUNS_FOR_CI runs the point estimates
are drawn without intervals, and the caption says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis import stats, summary
from analysis.results import CI, MIN_RUNS_FOR_CI, Results
from analysis.style import (
    CI_LABEL,
    COMPONENT_COLORS,
    COMPONENT_LABELS,
    SeriesStyle,
    caption,
    legend_top,
    mark_identical,
    method_styles,
    no_data,
    panels,
    styled,
)

TIME_MEASURES = {"time/collect": "time/collect", "time/policy_update": "time/policy_update",
                 "time/value_fit": "time/value_fit", "other": "time/other"}


def _interval_row(ax: Axes, y: float, row: Mapping[str, Any], color: Any) -> None:
    """A CI as a bar (kept visible when it has zero width) with the point as a tick; the point
    alone when the row has no CI."""
    point = float(row["estimate"])
    if row["interval"] == CI:
        lo, hi = float(row["ci_low"]), float(row["ci_high"])
        (bar,) = ax.barh(y, hi - lo, left=lo, height=0.6, color=color, alpha=0.75, edgecolor=color, linewidth=1.2)
        bar.sticky_edges.x.clear()  # let axis margins pad around the interval
        ax.plot([point], [y], marker="|", markersize=16, markeredgewidth=2, color="black", linestyle="none")
    else:
        ax.plot([point], [y], marker="o", markersize=7, color=color, markeredgecolor="black", linestyle="none")


def _styles(res: Results, methods: Sequence[str]) -> dict[str, SeriesStyle]:
    return mark_identical(method_styles(res.final, methods), res.identical_everywhere())


def _note(res: Results) -> list[str]:
    table = stats.reference_scores(None)
    refs = "; ".join(f"{t}: random {table[t].random:g}, reference {table[t].reference:g}"
                     for t in res.tasks_normalized if t in table)
    notes = [f"Normalized score = (R - random) / (reference - random) with {refs}. "
             "Final return: mean over the last 10% of updates of finished runs."]
    if res.tasks_left_out:
        notes.append(f"Left out (no reference score): {', '.join(res.tasks_left_out)}.")
    excluded = int((~summary.usable(res.final)).sum())
    if excluded:
        notes.append(f"{excluded} run(s) unfinished or without a final score are not included (see report).")
    fewest = res.runs_per_group()
    if fewest < MIN_RUNS_FOR_CI:
        notes.append(f"Only {fewest} runs in the smallest (method, task) group (fewer than {MIN_RUNS_FOR_CI}): "
                     "point estimates only, no bootstrap intervals, which over so few runs would span about "
                     "their range.")
    notes.append(res.identical_note())
    return notes


@styled
def plot_aggregates(res: Results) -> Figure:
    """IQM, median, mean and optimality gap of normalized scores, with stratified-bootstrap
    95% CIs (rliable, paper Sec. 4.3, Fig. 9)."""
    names = list(stats.AGGREGATES)
    methods = [m for m in res.methods if m in set(res.rows("normalized/IQM")["group"])]
    styles = _styles(res, methods)
    longest = max((len(s.label) for s in styles.values()), default=4)
    fig = Figure(figsize=(2.6 * len(names) + 0.07 * longest, 0.45 * len(methods) + 1.3), layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names):
        rows = res.rows(f"normalized/{name}").set_index("group")
        for i, m in enumerate(methods):
            _interval_row(ax, len(methods) - 1 - i, rows.loc[m], styles[m].color)
        ax.set_yticks(range(len(methods)), [styles[m].label for m in reversed(methods)])
        ax.set_ylim(-0.6, len(methods) - 0.4)
        ax.grid(axis="y", visible=False)
        ax.set_title(name)
        ax.set_xlabel("normalized gap, lower is better" if name == "Optimality gap" else "normalized score")
        ax.margins(x=0.12)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(4))
    caption(fig, _note(res))
    return fig


@styled
def plot_performance_profile(res: Results) -> Figure:
    """Fraction of runs with normalized score > τ, with CI bands (paper Sec. 4.2)."""
    fig, axes = panels(1, panel=(5.0, 3.4))
    ax = axes[0]
    table = res.rows("profile")
    methods = [m for m in res.methods if m in set(table["group"])]
    styles = _styles(res, methods)
    band = False
    for m in methods:
        t = table[table["group"] == m].sort_values("x")
        st = styles[m]
        if (t["interval"] == CI).all():
            ax.fill_between(t["x"], t["ci_low"], t["ci_high"], color=st.color, alpha=0.2, linewidth=0)
            band = True
        ax.plot(t["x"], t["estimate"], color=st.color, linestyle=st.linestyle, label=st.label)
    ax.set_xlabel("normalized score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    handles = [Line2D([], [], color=s.color, linestyle=s.linestyle, label=s.label) for s in styles.values()]
    if band:
        handles.append(Patch(facecolor="0.5", alpha=0.3, label=CI_LABEL + " (stratified)"))
    legend_top(fig, handles)
    caption(fig, _note(res))
    return fig


@styled
def plot_probability_of_improvement(res: Results) -> Figure:
    """P(X > Y) with stratified-bootstrap 95% CIs, a row per pair (paper Sec. 4.3)."""
    table = res.rows("probability_of_improvement")
    styles = _styles(res, [m for m in res.methods if m in set(table["group"])])
    labels = [f"P({a} > {b})" for a, b in zip(table["group"], table["versus"])]
    longest = max(map(len, labels))
    fig, axes = panels(1, panel=(3.2 + 0.07 * longest, 0.4 * len(table) + 1.0))
    ax = axes[0]
    for i, row in enumerate(table.to_dict("records")):
        _interval_row(ax, len(table) - 1 - i, row, styles[row["group"]].color)
    ax.axvline(0.5, color="0.4", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(table)), list(reversed(labels)))
    ax.set_ylim(-0.6, len(table) - 0.4)
    ax.set_xlim(-0.04, 1.04)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("probability of improvement")
    with_ci = bool((table["interval"] == CI).all())
    caption(fig, ([f"Bars: {CI_LABEL} (stratified, runs of X and Y resampled independently)."] if with_ci else [])
            + _note(res))
    return fig


@styled
def plot_time_breakdown(res: Results) -> Figure:
    """A panel per task: stacked mean seconds per update for each method (horizontal bars when
    method names are long, so the names stay readable)."""
    parts = [c for c, m in TIME_MEASURES.items() if len(res.rows(m))]
    tasks = summary.sorted_values(res.rows(TIME_MEASURES[parts[0]])["task"]) if parts else []
    methods_of = {t: [m for m in res.methods if m in set(res.rows(TIME_MEASURES[parts[0]], task=t)["group"])]
                  for t in tasks}
    longest = max((len(m) for ms in methods_of.values() for m in ms), default=0)
    across = longest > 12
    most = max((len(ms) for ms in methods_of.values()), default=1)
    fig, axes = panels(len(tasks), ncols_max=2 if across else 3,
                       panel=(3.0 + 0.065 * longest, 0.32 * most + 1.4) if across else (3.4, 2.6))
    for ax, task in zip(axes, tasks):
        methods = methods_of[task]
        pos = np.arange(len(methods))[::-1] if across else np.arange(len(methods))
        start = np.zeros(len(methods))
        for c in parts:
            v = res.rows(TIME_MEASURES[c], task=task).set_index("group")["estimate"].reindex(methods)
            v = v.fillna(0).to_numpy(float)
            style = {"color": COMPONENT_COLORS[c], "edgecolor": "0.2", "linewidth": 0.6,
                     "hatch": "//" if c == "other" else None, "label": COMPONENT_LABELS[c]}
            if across:
                ax.barh(pos, v, left=start, **style)
            else:
                ax.bar(pos, v, bottom=start, **style)
            start += v
        if across:
            ax.set_yticks(pos, methods)
            ax.grid(axis="y", visible=False)
            ax.set_xlabel("seconds per update (mean)")
        else:
            ax.set_xticks(pos, methods)
            ax.grid(axis="x", visible=False)
            ax.set_ylabel("seconds per update (mean)")
        ax.set_title(task)
    if not tasks:
        no_data(axes[0], "timing")
    handles = [Patch(facecolor=COMPONENT_COLORS[c], edgecolor="0.2", hatch="//" if c == "other" else None,
                     label=COMPONENT_LABELS[c]) for c in parts]
    legend_top(fig, handles)
    return fig


def aggregate_figures(res: Results) -> list[tuple[str, Figure, str]]:
    """The across-task figures, when every group has at least two runs."""
    if res.rows("normalized/IQM").empty:
        return []
    with_ci = bool((res.rows("normalized/IQM")["interval"] == CI).all())
    ci = " with stratified-bootstrap 95% CIs" if with_ci else " (point estimates: too few runs for intervals)"
    out = [("aggregate", plot_aggregates(res), "Aggregate normalized final scores across tasks: IQM, median, mean "
            f"and optimality gap{ci} (Agarwal et al., 2021)."),
           ("performance_profile", plot_performance_profile(res), "Performance profiles: fraction of runs whose "
            f"normalized final score exceeds τ{ci}.")]
    if len(res.rows("probability_of_improvement")):
        out.append(("probability_of_improvement", plot_probability_of_improvement(res),
                    f"Probability that a run of X scores higher than a run of Y on a random task{ci}."))
    return out

