"""Final-return tables: long CSV for machines, wide Markdown and LaTeX for people.

The table itself comes from ``summary.final_table``: one row per (task, method)
with the estimate, its 95% bootstrap CI, runs used (n) and runs in the group
(n_runs). Cells read "estimate [low, high]", with "(n/n_runs)" when runs are
missing and "(n=K)" on every complete cell when groups differ in size (a grid that ran
10 seeds of one method and 5 of another).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import summary
from trpo_bench.rundir import atomic_write_text


def _decimals(values: np.ndarray) -> int:
    finite = np.abs(values[np.isfinite(values)])
    top = finite.max() if finite.size else 0.0
    return 0 if top >= 100 else 1 if top >= 10 else 2


def cell_text(row: pd.Series, decimals: int, show_n: bool = False) -> str:
    """'2963 [2921, 3000]', plus ' (2/3)' when not every run in the group is used, or
    ' (n=3)' when ``show_n`` and every run is used."""
    if not math.isfinite(row["estimate"]):
        text = "n/a"
    else:
        f = f"{{:.{decimals}f}}"
        text = f"{f.format(row['estimate'])} [{f.format(row['ci_low'])}, {f.format(row['ci_high'])}]"
    if row["n"] < row["n_runs"]:
        text += f" ({row['n']}/{row['n_runs']})"
    elif show_n:
        text += f" (n={row['n']})"
    return text


def wide(table: pd.DataFrame, row: str = "env_id", column: str = "method") -> pd.DataFrame:
    """Tasks as rows, methods as columns, cells as strings (see ``cell_text``)."""
    if table.empty:
        return pd.DataFrame()
    decimals = _decimals(table["estimate"].to_numpy(dtype=float))
    uneven = table["n_runs"].nunique() > 1
    cells = table.assign(cell=[cell_text(r, decimals, show_n=uneven) for _, r in table.iterrows()])
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
