"""How every figure looks, and the one layer that saves figures.

Colours fixed per algorithm (colour-blind safe) with line styles as well, so coinciding
series stay visible and print in grey; panels, a legend above them, small-print captions
below; ``save_figure`` writes PNG and PDF through the run store's atomic writer.
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from analysis import summary
from analysis.summary import algo_label, format_steps, format_value
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


def styled(fn):
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


def panels(n: int, ncols_max: int = 3, panel: tuple[float, float] = PANEL) -> tuple[Figure, list[Axes]]:
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


def legend_top(fig: Figure, handles: list) -> None:
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


def steps_formatter() -> FuncFormatter:
    return FuncFormatter(lambda v, _: format_steps(v) if v else "0")


def value_ticks(ax: Axes, values: Sequence[float], log: bool) -> None:
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


def log_y(ax: Axes) -> None:
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


def time_scale(seconds: float) -> tuple[float, str]:
    if seconds >= 3 * 3600:
        return 3600.0, "h"
    if seconds >= 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


MAX_DOTS = 1500  # per scatter series: enough to show the spread, small enough for a PDF


def subsample(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``n`` rows of ``frame``, drawn without replacement."""
    return frame if len(frame) <= n else frame.iloc[np.sort(rng.choice(len(frame), n, replace=False))]


def dot_alpha(n: int) -> float:
    """Opacity for n overlapping dots: faint for thousands, visible for a handful."""
    return float(np.clip(40.0 / max(n, 1), 0.12, 0.6))


def no_data(ax: Axes, what: str) -> Axes:
    ax.text(0.5, 0.5, f"no {what} logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


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


def small_sample_note(fewest: int, what: str = "runs") -> str:
    """Caption line for figures that draw runs instead of intervals (results.MIN_RUNS_FOR_CI)."""
    from analysis.results import MIN_RUNS_FOR_CI

    if fewest >= MIN_RUNS_FOR_CI or fewest < 1:
        return ""
    if fewest == 1:
        return f"One run in the smallest group: the {what} are drawn as they are, with no interval."
    return (f"Only {fewest} run{'s' if fewest > 1 else ''} in the smallest group (fewer than {MIN_RUNS_FOR_CI}): "
            f"the individual {what} are drawn instead of 95% bootstrap intervals, which over so few runs "
            "would span about their range.")


def mark_identical(styles: Mapping[Any, SeriesStyle], sets: Sequence[Sequence[Any]]) -> dict[Any, SeriesStyle]:
    """Label a series that coincides with earlier ones "NPG (identical to TRPO)", so a legend
    never lists a series that cannot be seen without saying why."""
    out = dict(styles)
    for group in sets:
        members = [m for m in group if m in out]
        for m in members[1:]:
            first = out[members[0]].label
            s = out[m]
            out[m] = SeriesStyle(f"{s.label} (identical to {first})", s.color, s.linestyle, s.marker)
    return out
