"""Learning curves and ablations (final return against a setting), drawn from ``results``.

With MIN_RUNS_FOR_CI runs or more per group a curve gets its 95% bootstrap band and a point
its error bar; with fewer, the individual runs are drawn instead and the caption says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis import summary
from analysis.results import CI, RETURN, Results
from analysis.style import (
    CI_LABEL,
    SeriesStyle,
    caption,
    hue_styles,
    legend_top,
    mark_identical,
    method_styles,
    panel_note,
    panels,
    small_sample_note,
    steps_formatter,
    styled,
    time_scale,
    use_log_axis,
    value_ticks,
)

MEASURES = {"env_steps": "return_curve", "time/wall": "return_curve_walltime"}


def curve_styles(res: Results, methods: Sequence[str], hue: str) -> dict[str, SeriesStyle]:
    """A style per method: by algorithm, or by the value of the setting ``hue``."""
    rows = res.final.drop_duplicates("method").set_index("method")
    if hue == "method":  # comparing sources: shades per algorithm, an external baseline dashed
        styles = method_styles(res.final, methods)
        external = set(res.final.loc[res.final.get("external", pd.Series(False, index=res.final.index))
                                     .fillna(False).astype(bool), "method"])
        styles = {m: SeriesStyle(s.label, s.color, "--" if m in external else s.linestyle) for m, s in styles.items()}
        return mark_identical(styles, res.identical_everywhere())
    if hue == "algo":
        by_value = hue_styles("algo", [rows.loc[m, "algo"] for m in methods])
        styles = {m: by_value[rows.loc[m, "algo"]] for m in methods}
        styles = {m: SeriesStyle(m, s.color, s.linestyle, s.marker) for m, s in styles.items()}
    else:
        values = summary.sorted_values([rows.loc[m, hue] for m in methods])
        by_value = hue_styles(hue, values)
        styles = {m: by_value[rows.loc[m, hue]] for m in sorted(methods, key=lambda m: values.index(rows.loc[m, hue]))}
    return mark_identical(styles, res.identical_everywhere())


@styled
def plot_curve_panel(res: Results, task: str, styles: Mapping[str, SeriesStyle], *, x: str = "env_steps",
                     x_scale: float = 1.0, ax: Axes | None = None) -> tuple[Axes, set[str]]:
    """One task's curves: per method the mean (solid while every run has data, dotted after),
    and its CI band, or, under MIN_RUNS_FOR_CI runs, the runs themselves as thin lines.
    Returns the ax and what was drawn ({"band", "runs", "partial"})."""
    ax = ax if ax is not None else Figure().subplots()
    drawn: set[str] = set()
    table = res.rows(MEASURES[x], task=task)
    for method, style in styles.items():
        c = table[table["group"] == method]
        if c.empty:
            continue
        xs = c["x"].to_numpy(float) / x_scale
        est = c["estimate"].to_numpy(float)
        full = c["n"].to_numpy() >= c["n_runs"].to_numpy()
        if (c["interval"] == CI).all():
            ax.fill_between(xs, c["ci_low"].to_numpy(float), c["ci_high"].to_numpy(float), color=style.color,
                            alpha=0.2, linewidth=0)
            drawn.add("band")
        else:
            runs = res.metrics[(res.metrics["env_id"] == task) & (res.metrics["method"] == method)]
            for _, r in runs.groupby("run_id", sort=True):
                r = r.sort_values(x, kind="stable")
                ax.plot(r[x].to_numpy(float) / x_scale, r[RETURN].to_numpy(float), color=style.color,
                        linewidth=0.7, alpha=0.45, linestyle="-")
            drawn.add("runs")
        ax.plot(xs, np.where(full, est, np.nan), color=style.color, linestyle=style.linestyle, label=style.label)
        if not full.all():
            # Dotted past the point where the first run stops (one point back, so the segments join).
            partial = ~full | np.r_[~full[1:], False]
            ax.plot(xs, np.where(partial, est, np.nan), color=style.color, linestyle=":", linewidth=1.2)
            drawn.add("partial")
    return ax, drawn


@styled
def plot_learning_curves(res: Results, methods: Sequence[str] | None = None, *, hue: str = "algo",
                         x: str = "env_steps", title: str | None = None) -> Figure:
    """A panel per task, one curve per method (coloured by algorithm or by ``hue``'s value)."""
    methods = [m for m in (methods or res.methods)]
    table = res.rows(MEASURES[x])
    table = table[table["group"].isin(methods)]
    tasks = summary.sorted_values(table["task"]) if len(table) else []
    fig, axes = panels(len(tasks))
    styles = curve_styles(res, [m for m in methods if m in set(table["group"])], hue)
    scale, unit = (1.0, "") if x == "env_steps" else time_scale(float(table["x"].max()) if len(table) else 1.0)
    drawn: set[str] = set()
    for ax, task in zip(axes, tasks):
        _, what = plot_curve_panel(res, task, styles, x=x, x_scale=scale, ax=ax)
        drawn |= what
        ax.set_title(f"{task} · {title}" if title else task)
        if x == "env_steps":
            ax.xaxis.set_major_formatter(steps_formatter())
            ax.set_xlabel("environment steps")
        else:
            ax.set_xlabel(f"wall-clock time ({unit})")
        ax.set_ylabel("mean episode return (training)")
        if x == "env_steps":
            runs = res.final[(res.final["env_id"] == task) & res.final["method"].isin(list(styles))]
            same = [" = ".join(g) + " (identical runs)" for g in res.identical.get(task, [])
                    if len(set(g) & set(styles)) > 1 and list(g) not in res.identical_everywhere()]
            notes = summary.coverage_notes(runs, "method", lambda m: styles[m].label.split(" (identical")[0])
            panel_note(ax, same + notes)
    if not tasks:
        axes[0].text(0.5, 0.5, f"no {RETURN} data", ha="center", va="center", transform=axes[0].transAxes)
    handles = [Line2D([], [], color=s.color, linestyle=s.linestyle, label=s.label) for s in styles.values()]
    if "band" in drawn:
        handles.append(Patch(facecolor="0.5", alpha=0.3, label=CI_LABEL))
    if "runs" in drawn:
        handles.append(Line2D([], [], color="0.4", linewidth=0.7, alpha=0.6, label="individual runs"))
    if "partial" in drawn:
        handles.append(Line2D([], [], color="0.4", linestyle=":", label="not all runs reach here"))
    legend_top(fig, handles)
    fewest = int(table.groupby(["task", "group"])["n_runs"].max().min()) if len(table) else 0
    external = [m for m in styles if "[external: " in m]
    note = (f"{', '.join(external)}: curves read from an external baseline file, not run by this harness; "
            "their final scores follow the same rule (mean over the last 10% of points).") if external else ""
    caption(fig, [small_sample_note(fewest), res.identical_note(), note])
    return fig


def curve_figures(res: Results) -> list[tuple[str, Figure, str]]:
    """(name, figure, one-line caption) of every learning-curve figure the grid supports."""
    out = []
    if res.rows("return_curve").empty:
        return out
    stat = "mean over runs" + (f" with {CI_LABEL}" if (res.rows("return_curve")["interval"] == CI).all() else "")
    if not res.settings or "store" in res.settings:  # one curve per method; sources side by side
        out.append(("curves", plot_learning_curves(res, hue="algo" if not res.settings else "method"),
                    f"Learning curves: training return against environment steps, {stat}."))
        if len(res.rows("return_curve_walltime")):
            out.append(("curves_walltime", plot_learning_curves(res, x="time/wall", hue="algo"),
                        f"Training return against wall-clock time, {stat}."))
    rows = res.final.drop_duplicates("method")
    for axis in [a for a in res.settings if a != "store"]:
        others = [a for a in res.settings if a != axis]
        for algo in summary.algos_varying(res.final, axis):
            sub = rows[rows["algo"] == algo]
            for combo in (sub[others].drop_duplicates().to_dict("records") if others else [{}]):
                part = sub
                for k, v in combo.items():
                    part = part[[summary.same_value(x, v) for x in part[k]]]
                if part[axis].nunique(dropna=False) < 2:
                    continue
                suffix = "".join(f"_{k}={summary.format_value(v)}" for k, v in combo.items())
                title = ", ".join([summary.algo_label(algo),
                                   *(summary.axis_value_label(k, v) for k, v in combo.items())])
                methods = [m for m in res.methods if m in set(part["method"])]
                out.append((f"curves_{axis}_{algo}{suffix}", plot_learning_curves(res, methods, hue=axis, title=title),
                            f"{title}: learning curves per {summary.AXIS_TITLES.get(axis, axis)}, {stat}."))
    return out


# ---------------------------------------------------------------------------
# Ablations
# ---------------------------------------------------------------------------


def _span(values: Sequence[float]) -> float:
    return float(max(values) - min(values)) if len(values) > 1 else 1.0


@styled
def plot_ablation(res: Results, axis: str, *, measure: str = "final_return") -> Figure:
    """A panel per task: final return against ``axis``; a series per combination of the other
    method settings (never pooled), points the IQM over finished runs (the statistic of the
    report's and docs/results.md's tables), dots the runs. A
    categorical axis (``fvp``, ``kl_bound``) puts its values side by side, in method order."""
    others = [a for a in res.settings if a != axis]
    numeric = summary.is_numeric_axis(res.final, axis)
    final = res.final[pd.to_numeric(res.final[axis], errors="coerce").notna()] if numeric else \
        res.final[res.final[axis].notna()]
    final = final.assign(series=[summary.method_label(r, others) for r in final.to_dict("records")])
    series_of = final.drop_duplicates("method").set_index("method")[["series", axis]]
    by_series = final.drop(columns="method").rename(columns={"series": "method"})
    styles = method_styles(by_series, summary.method_order(by_series, others))
    table = res.rows(measure, statistic="iqm")
    table = table[table["group"].isin(series_of.index)]
    tasks = summary.sorted_values(final["env_id"])
    if numeric:
        xs_all = sorted(pd.to_numeric(final[axis]).unique())
        position = float
    else:  # categories at 0, 1, ... in the order the methods are drawn
        categories = list(dict.fromkeys(series_of.loc[[m for m in res.methods if m in series_of.index], axis]))
        xs_all = list(range(len(categories)))
        position = categories.index
    log = numeric and use_log_axis(axis, xs_all)
    fig, axes = panels(len(tasks))
    bars = False
    for ax, task in zip(axes, tasks):
        t = table[table["task"] == task]
        ok = final[(final["env_id"] == task) & summary.usable(final)]
        for k, (series, style) in enumerate(styles.items()):
            rows = t[t["group"].map(series_of["series"]) == series]
            rows = rows.assign(_x=rows["group"].map(series_of[axis]).map(position).astype(float)).sort_values("_x")
            rows = rows[np.isfinite(rows["estimate"].astype(float))]
            shift = (k - (len(styles) - 1) / 2) * 0.06  # side by side, so error bars do not overlap
            place = (lambda v, s=shift: np.asarray(v, float) * 10**s) if log else \
                (lambda v, s=shift: np.asarray(v, float) + s * _span(xs_all))
            if rows.empty:
                continue
            est = rows["estimate"].to_numpy(float)
            with_ci = (rows["interval"] == CI).to_numpy()
            err = np.where(with_ci, [est - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - est], 0)
            bars |= bool(with_ci.any())
            ax.errorbar(place(rows["_x"]), est, yerr=err if with_ci.any() else None, color=style.color,
                        linestyle=style.linestyle if numeric else "none",  # categories: no line between
                        marker=style.marker, capsize=3, markersize=5, label=style.label)
            dots = ok[ok["series"] == series]
            ax.scatter(place(dots[axis].map(position).astype(float).to_numpy()) * (10**0.025 if log else 1)
                       + (0 if log else 0.025 * _span(xs_all)), dots["final"], color=style.color, s=10, alpha=0.45,
                       linewidths=0, zorder=1)
        if numeric:
            value_ticks(ax, xs_all, log)
        else:
            ax.set_xticks(xs_all, [summary.axis_value_label(axis, c).split("=")[-1] for c in categories])
            ax.set_xlim(-0.5, len(categories) - 0.5)
        title = summary.AXIS_TITLES.get(axis, axis)
        # a long title takes the scale on a line of its own, so side-by-side panels' labels do not meet
        ax.set_xlabel(title + ((", log scale" if len(title) <= 30 else "\n(log scale)") if log else ""))
        ax.set_ylabel("final return")
        ax.set_title(task)
    handles = [Line2D([], [], color=s.color, linestyle=s.linestyle if numeric else "none", marker=s.marker,
                      label=s.label) for s in styles.values()]
    handles.append(Line2D([], [], color="0.4", marker="o", linestyle="none", alpha=0.4, markersize=3,
                          label="individual runs"))
    legend_top(fig, handles)
    fewest = int(table["n"].min()) if len(table) else 0
    notes = [f"Final return: mean of {RETURN} over the last 10% of each run's updates; points: interquartile "
             "mean (IQM) over finished runs" + (f", error bars: {CI_LABEL}." if bars else "."),
             small_sample_note(fewest)]
    notes += summary.exclusion_notes(final.assign(method=final["series"] + ", " + final[axis].map(
        lambda v: summary.axis_value_label(axis, v))))
    caption(fig, notes)
    return fig


def ablation_figures(res: Results) -> list[tuple[str, Figure, str]]:
    out = []
    for axis in res.settings:
        if res.final[axis].notna().any() and summary.usable(res.final).any():
            out.append((f"ablation_{axis}", plot_ablation(res, axis),
                        f"Final return against {summary.AXIS_TITLES.get(axis, axis)}, per task."))
    return out

