"""Final-return tables: long CSV for machines, wide Markdown and LaTeX for people.

The table comes from ``results`` (``summary.final_table`` underneath): one row per (task,
method) with the estimate, its interval and what the interval is, runs used (n) and runs in the
group (n_runs). Every cell names its n (``cell_text``): a reader never has to guess whether
"368 [368, 368]" is one run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import stats, summary
from trpo_bench.rundir import atomic_write_text


def _decimals(values: np.ndarray) -> int:
    finite = np.abs(values[np.isfinite(values)])
    top = finite.max() if finite.size else 0.0
    return 0 if top >= 100 else 1 if top >= 10 else 2


def cell_text(row: pd.Series, decimals: int) -> str:
    """'2963 [2921, 3000] (n=10)' with a 95% bootstrap CI (MIN_RUNS_FOR_CI runs or more),
    '2963 (runs 2900–3010, n=3)' below that, '2963 (n=1)' for one run; 'n=2 of 3' when not every
    run in the group is used."""
    f = f"{{:.{decimals}f}}"
    kind = row.get("interval", "")
    count = f"n={row['n']}" + (f" of {row['n_runs']}" if row["n"] < row["n_runs"] else "")
    if not math.isfinite(row["estimate"]):
        return f"n/a ({count})"
    text = f.format(row["estimate"])
    if kind == stats.CI_KIND:
        return f"{text} [{f.format(row['ci_low'])}, {f.format(row['ci_high'])}] ({count})"
    if kind == stats.RANGE_KIND:
        return f"{text} (runs {f.format(row['ci_low'])}–{f.format(row['ci_high'])}, {count})"
    return f"{text} ({count})"


def wide(table: pd.DataFrame, row: str = "env_id", column: str = "method") -> pd.DataFrame:
    """Tasks as rows, methods as columns, cells as strings (see ``cell_text``)."""
    if table.empty:
        return pd.DataFrame()
    decimals = _decimals(table["estimate"].to_numpy(dtype=float))
    cells = table.assign(cell=[cell_text(r, decimals) for _, r in table.iterrows()])
    out = cells.pivot(index=row, columns=column, values="cell")
    out = out.reindex(index=summary.sorted_values(table[row]),
                      columns=list(dict.fromkeys(table[column])))  # method order as given
    out.index.name = {"env_id": "task"}.get(row, row)
    out.columns.name = None
    return out.fillna("")


def to_markdown(table: pd.DataFrame, row: str = "env_id", column: str = "method") -> str:
    """GitHub-flavoured Markdown of ``wide(table)``."""
    w = wide(table, row, column)
    if w.empty:
        return "_No finished runs._\n"
    header = [w.index.name or "", *map(str, w.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * len(w.columns)) + "|"]
    lines += ["| " + " | ".join([str(idx), *map(str, vals)]) + " |" for idx, vals in zip(w.index, w.to_numpy())]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    return out.replace("δ", r"$\delta$")


def to_latex(table: pd.DataFrame, caption: str | None = None, label: str | None = None,
             row: str = "env_id", column: str = "method") -> str:
    """A booktabs ``table`` environment of ``wide(table)``."""
    w = wide(table, row, column)
    if w.empty:
        return "% no finished runs\n"
    cols = "l" + "c" * len(w.columns)
    body = [" & ".join([latex_escape(w.index.name or ""), *(latex_escape(c) for c in w.columns)]) + r" \\"]
    body += [" & ".join([latex_escape(i), *(latex_escape(v) for v in vals)]) + r" \\"
             for i, vals in zip(w.index, w.to_numpy())]
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", body[0], r"\midrule", *body[1:], r"\bottomrule",
              r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(
    table: pd.DataFrame, out_dir: Path, name: str, caption: str | None = None, label: str | None = None
) -> list[Path]:
    """Write <name>.csv (long), <name>.md and <name>.tex (wide) under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex")]
    atomic_write_text(paths[0], table.to_csv(index=False))
    atomic_write_text(paths[1], to_markdown(table))
    atomic_write_text(paths[2], to_latex(table, caption=caption, label=label or f"tab:{name}"))
    return paths
