"""Command line: figures and reports from run stores.

    python -m analysis plot   SOURCE [SOURCE ...] [--out DIR] [--baseline CSV ...]
    python -m analysis report SOURCE [SOURCE ...] [--out DIR] [--baseline CSV ...]

SOURCE is a run directory, a grid directory, a parent of grid directories, or
wandb:ENTITY/PROJECT[/GROUP]. Both commands write to <first SOURCE>/figures by default:
``plot`` the figures and results.csv, ``report`` those plus report.md and tables/.
Figures go to one subdirectory per grid when there are several grids; several sources
(or a baseline) add a ``comparison`` grid over the tasks they share.
One line is printed per file written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from analysis import compare, stats  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("plot", "write every supported figure (PNG + PDF)"),
                            ("report", "write report.md with figures and tables")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("runs_dirs", nargs="+", metavar="SOURCE")
        p.add_argument("--baseline", type=Path, action="append", default=[],
                       help="external baseline CSV (method, task, seed, env_steps, return); repeatable")
        p.add_argument("--out", type=Path, default=None, help="output directory (see module docs for defaults)")
        p.add_argument("--reps", type=int, default=stats.DEFAULT_REPS, help="bootstrap resamples")
        p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    try:
        paths = compare.run(args.command, args.runs_dirs, args.out, args.baseline, reps=args.reps, seed=args.seed)
    except compare.SourceError as err:
        parser.error(str(err))
    for path in paths:
        print(path)
    if not paths:
        print(f"nothing to plot: no run with metrics under {', '.join(map(str, args.runs_dirs))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
