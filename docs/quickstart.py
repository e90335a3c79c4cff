"""Write the README's quickstart text and figures from the committed quickstart store.

    trpo-bench grid experiments/quickstart.yaml --workers 2 --out runs
    trpo-bench export runs/quickstart results/quickstart
    python docs/quickstart.py            # README block and docs/img/quickstart_*.png from results/quickstart
    python docs/quickstart.py --check    # exit 1 when the README's block is not what the store says

The numbers in the block (run time, backtracking counts, identical methods, final returns) are
read from the store through ``analysis.results``, so they cannot drift from the figures;
tests/test_docs.py fails when the README's block differs from what this writes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import plots, results, summary  # noqa: E402
from analysis.load import load_store  # noqa: E402
from trpo_bench.rundir import atomic_write_text, read_config, read_status  # noqa: E402

STORE = ROOT / "results" / "quickstart"
README = ROOT / "README.md"
BEGIN = "<!-- quickstart: written by docs/quickstart.py from results/quickstart; do not edit by hand -->"
END = "<!-- quickstart: end -->"
FIGURES = {"curves": "quickstart_curves.png", "trust_region": "quickstart_trust_region.png"}


def _duration(run_dirs: list[str]) -> str:
    """M:SS from the first run's start (config.json ``created``) to the last one's end."""
    fmt = "%Y-%m-%dT%H:%M:%S%z"
    starts = [dt.datetime.strptime(read_config(d)["created"], fmt) for d in run_dirs]
    ends = [dt.datetime.strptime(read_status(d)["updated"], fmt) for d in run_dirs]
    seconds = int((max(ends) - min(starts)).total_seconds())
    return f"{seconds // 60}:{seconds % 60:02d}"


def _backtracking(res: results.Results, task: str) -> str:
    m = res.metrics[(res.metrics["env_id"] == task) & (res.metrics["algo"] == "trpo")]
    m = m.sort_values(["seed", "update"])
    backtracked = m[m["policy/backtracks"] > 0]
    text = f"{len(backtracked)} of {len(m)} TRPO updates"
    if len(backtracked):
        first = backtracked.groupby("seed")["update"].min()
        never = sorted(set(m["seed"]) - set(first.index))
        text += (" (first in update " + ", ".join(f"{int(u)}" for u in first) + " of seed"
                 + ("s " if len(first) > 1 else " ") + ", ".join(map(str, first.index))
                 + (f"; seed {', '.join(map(str, never))} never" if never else "") + ")")
    return text


def paragraph(store_dir: Path = STORE) -> str:
    """The README's quickstart block, every number read from ``store_dir``."""
    store = load_store(store_dir)
    (grid,) = store.grid_names
    res = results.compute(store.select_grid(grid), reps=200, grid=grid)
    seeds = sorted(store.runs["seed"].unique())
    tasks = summary.sorted_values(store.runs["env_id"])
    identical = {t: any({"TRPO", "NPG"} <= set(s) for s in res.identical.get(t, [])) for t in tasks}
    lines = [f"What the committed quickstart run produces (`results/quickstart`: {len(seeds)} seeds, "
             f"{_duration(list(store.runs['run_dir']))} from the first run's start to the last run's end). "
             "With 3 seeds per method the figures draw each run (thin) and their mean (thick) "
             "rather than a bootstrap band, which over 3 runs would be about their range. TRPO and NPG "
             "coincide bit for bit until TRPO's line search first backtracks:", ""]
    for t in tasks:
        same = " so TRPO and NPG are identical, run for run (the legends say so)" if identical[t] else \
            " so TRPO and NPG part from there"
        lines.append(f"- {t}: the line search backtracked in {_backtracking(res, t)},{same}.")
    final = res.rows("final_return", statistic="mean")
    table = final.pivot(index="task", columns="group", values="estimate").reindex(index=tasks, columns=res.methods)
    low = final.pivot(index="task", columns="group", values="ci_low").reindex(index=tasks, columns=res.methods)
    high = final.pivot(index="task", columns="group", values="ci_high").reindex(index=tasks, columns=res.methods)
    lines += ["", "Final training return (mean over the last 10% of updates; mean of the seeds, their range "
              "in brackets):", "", "| task | " + " | ".join(res.methods) + " |",
              "|---|" + "---:|" * len(res.methods)]
    for t in tasks:
        cells = [f"{table.loc[t, m]:.0f} [{low.loc[t, m]:.0f}–{high.loc[t, m]:.0f}]"
                 if pd.notna(low.loc[t, m]) else f"{table.loc[t, m]:.0f}" for m in res.methods]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_block(text: str) -> str:
    """The generated block of the README's text (between BEGIN and END)."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n")


def write_figures(store_dir: Path = STORE) -> list[Path]:
    """Render the quickstart's figures and copy those the README shows into docs/img."""
    with tempfile.TemporaryDirectory() as tmp:
        plots.make_all([store_dir], Path(tmp))
        written = []
        for name, target in FIGURES.items():
            shutil.copyfile(Path(tmp) / f"{name}.png", ROOT / "docs" / "img" / target)
            written.append(ROOT / "docs" / "img" / target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=STORE, help="quickstart run store (default: results/quickstart)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the README differs")
    args = parser.parse_args(argv)
    text = README.read_text()
    block = paragraph(args.store)
    if args.check:
        if readme_block(text) != block:
            print("README.md's quickstart block differs from the store: run python docs/quickstart.py", file=sys.stderr)
            return 1
        return 0
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    atomic_write_text(README, text[:start] + "\n" + block + "\n" + text[end:])
    for path in [README, *write_figures(args.store)]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
