"""Command line: figures and reports from run stores.

    python -m analysis plot   RUNS_DIR [RUNS_DIR ...] [--out DIR]
    python -m analysis report RUNS_DIR [RUNS_DIR ...] [--out DIR]

RUNS_DIR is a run directory, a grid directory or a parent of grid directories.
Both commands write to <RUNS_DIR>/figures by default (the first RUNS_DIR when
there are several): ``plot`` the figures, ``report`` report.md beside them plus
tables/. Figures go to one subdirectory per grid when there are several grids.
One line is printed per file written (or reused, for ``report``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from analysis import plots, report, stats  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("plot", "write every supported figure (PNG + PDF)"),
                            ("report", "write report.md with figures and tables")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("runs_dirs", nargs="+", type=Path, metavar="RUNS_DIR")
        p.add_argument("--out", type=Path, default=None, help="output directory (see module docs for defaults)")
        p.add_argument("--reps", type=int, default=stats.DEFAULT_REPS, help="bootstrap resamples")
        p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.runs_dirs if not p.exists()]
    if missing:
        parser.error(f"no such directory: {', '.join(missing)}")
    out = args.out or args.runs_dirs[0] / "figures"
    if args.command == "plot":
        paths = plots.make_all(args.runs_dirs, out, reps=args.reps, seed=args.seed)
    else:
        paths = report.write_report_files(args.runs_dirs, out, reps=args.reps, seed=args.seed)
    for path in paths:
        print(path)
    if not paths:
        print(f"nothing to plot: no run with metrics under {', '.join(map(str, args.runs_dirs))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
