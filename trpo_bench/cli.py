"""``trpo-bench train | grid | plot | report | export``.

Every user mistake (bad YAML, unknown setting, wrong type, missing file) ends with a
short message and exit code 2 before anything is written to the run store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trpo_bench.config import ALGOS, ConfigError, settings_help


def _settings_epilog() -> str:
    lines = ["settings (in a --config YAML file, or --set key=value; defaults shown):"]
    section = None
    for sec, name, default, help_ in settings_help():
        if sec != section:
            lines.append(f"\n  [{sec}]")
            section = sec
        d = list(default) if isinstance(default, tuple) else default
        lines.append(f"  {name:<22} {str(d):<12} {help_}")
    return "\n".join(lines)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train one run", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one run and record it in the run store (runs/<grid>/<run_id>/).",
        epilog=_settings_epilog(),
    )
    p.add_argument("--algo", choices=ALGOS, help="policy update (default: trpo)")
    p.add_argument("--env", dest="env_id", help="gymnasium id, or module:EnvId to register a package first "
                                                "(default: CartPole-v1)")
    p.add_argument("--seed", type=int, help="run seed (default: 0)")
    p.add_argument("--steps", dest="total_steps", type=int, help="environment steps (default: 100000)")
    p.add_argument("--config", type=Path, help="YAML file of settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (repeatable), e.g. --set max_kl=0.02")
    p.add_argument("--out", type=Path, default=Path("runs"), help="run store root (default: runs/)")
    p.add_argument("--wandb", choices=("offline", "online", "disabled"),
                   help="W&B mode (default: offline, unless WANDB_MODE or WANDB_API_KEY says otherwise)")
    p.add_argument("--project", default="trpo-bench", help="W&B project (default: trpo-bench)")
    p.add_argument("--group", help="W&B group; also the run store's grid directory (default: train)")
    p.add_argument("--tags", nargs="*", default=[], help="W&B tags")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _add_grid(sub) -> None:
    p = sub.add_parser("grid", help="run an experiment grid (YAML)",
                       description="Expand a grid file into runs and train them in parallel; done runs are skipped, "
                                   "unfinished ones resume from their checkpoint.")
    p.add_argument("file", type=Path, help="grid YAML, e.g. experiments/quickstart.yaml")
    p.add_argument("--workers", type=int, help="parallel runs (default: the CPU count)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="executor (default: local)")
    p.add_argument("--ray-address", help="address of an existing Ray cluster (default: start a local one)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and where each is stored; run nothing")
    p.add_argument("--only", metavar="PATTERN", help="run only the runs whose id matches this glob pattern")
    p.add_argument("--retries", type=int, default=1, help="retries of a failed run (default: 1)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="run store root (default: runs/)")
    p.add_argument("--wandb", choices=("offline", "online", "disabled"), help="W&B mode for every run")
    p.add_argument("--no-analysis", action="store_true", help="skip the figures and report at the end")


def _add_analysis(sub) -> None:
    for name, help_ in (("plot", "write the figures of a run store"), ("report", "write a Markdown report")):
        p = sub.add_parser(name, help=help_, description=help_ + ". Several sources are also compared in one "
                           "'comparison' grid over the tasks they share.")
        p.add_argument("runs_dir", nargs="+", metavar="SOURCE",
                       help="run-store directory (a grid, a parent, or a run), or wandb:ENTITY/PROJECT[/GROUP]")
        p.add_argument("--out", type=Path, help="output directory (default: <first SOURCE>/figures)")
        p.add_argument("--baseline", type=Path, action="append", default=[], metavar="CSV",
                       help="external baseline to overlay, labelled external: a CSV with columns method, task, seed, "
                            "env_steps, return (one row per logged point); repeatable")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="copy a run store's metrics and configs (no checkpoints) elsewhere",
                       description="Copy grid.json and every run's config.json, status.json, metrics.csv and eval.json "
                                   "(not checkpoints or W&B files), keeping the layout: a compact copy that "
                                   "plot and report read like the original.")
    p.add_argument("runs_dir", type=Path, help="run store to copy from")
    p.add_argument("dest", type=Path, help="destination directory")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate finished runs' final policies deterministically",
                       description="Run each finished run's final policy (mean action) for a number of episodes "
                                   "and write eval.json in its directory; the protocol behind rl-baselines3-zoo's "
                                   "published returns. Runs whose eval.json is current are skipped.")
    p.add_argument("runs_dir", type=Path, nargs="+", help="run-store directories (a grid, a parent, or a run)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per run (default: 10)")
    p.add_argument("--force", action="store_true", help="evaluate again even where eval.json is current")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trpo-bench", description="A research harness for TRPO, NPG and PG.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_grid(sub)
    _add_analysis(sub)
    _add_export(sub)
    _add_evaluate(sub)
    return parser


def _train(args) -> int:
    from trpo_bench.store import is_run_dir
    from trpo_bench.train import Interrupted, RunOptions, run, run_dir_for

    options = RunOptions(out=args.out, wandb=args.wandb, project=args.project, group=args.group, tags=args.tags,
                         progress=not args.quiet)
    if args.resume is not None:
        if not is_run_dir(args.resume):
            raise ConfigError([f"--resume {args.resume}: not a run directory (no config.json and status.json)"])
        result_dir = args.resume
        try:
            result = run(None, options, resume_dir=args.resume)  # type: ignore[arg-type]
        except Interrupted:
            return 130
    else:
        flags = {k: getattr(args, k) for k in ("algo", "env_id", "seed", "total_steps") if getattr(args, k) is not None}
        cfg = _resolve_config(args, flags)
        result_dir = run_dir_for(cfg, options)
        if result_dir.exists():
            raise ConfigError([f"{result_dir} exists: continue it with --resume {result_dir}, or choose another --out"])
        try:
            result = run(cfg, options)
        except Interrupted:
            return 130
    print(f"{result.state}: {result.env_steps:,} steps, {result.updates} updates -> {result.run_dir}")
    ret = result.last.get("rollout/ep_return_mean")
    if ret is not None:
        print(f"last training return: {ret:.1f}")
    return 0


def _resolve_config(args, flags):
    """Defaults, then the --config file, then --algo/--env/--seed/--steps, then --set."""
    from trpo_bench.config import load_run_config

    return load_run_config(args.config, args.overrides, flags)


def _grid(args) -> int:
    from trpo_bench import grid

    return grid.main(args)


def _analysis(args) -> int:
    from analysis.compare import SourceError, run

    try:
        paths = run(args.command, args.runs_dir, args.out, args.baseline)
    except SourceError as err:
        raise ConfigError([str(err)]) from None
    for path in (paths if args.command == "plot" else paths[-1:]):
        print(path)
    return 0


def _export(args) -> int:
    from trpo_bench.store import export_runs

    if not args.runs_dir.is_dir():
        raise ConfigError([f"no such directory: {args.runs_dir}"])
    written = export_runs(args.runs_dir, args.dest)
    if not written:
        raise ConfigError([f"{args.runs_dir} holds no runs (no config.json and status.json below it)"])
    size = sum(p.stat().st_size for p in written)
    print(f"{len(written)} files, {size / 1e6:.1f} MB -> {args.dest}")
    return 0


def _evaluate(args) -> int:
    from trpo_bench.evaluate import evaluate_run, find_runs, is_current
    from trpo_bench.store import CHECKPOINT, RunStore

    if args.episodes < 1:
        raise ConfigError([f"--episodes must be >= 1; got {args.episodes}"])
    runs = find_runs(args.runs_dir)
    if not runs:
        raise ConfigError([f"{', '.join(map(str, args.runs_dir))} holds no runs (no config.json and status.json)"])
    done = current = skipped = 0
    for run in runs:
        state = (RunStore(run).read_status() or {}).get("state")
        if state != "done" or not (run / CHECKPOINT).is_file():
            why = f"the run is {state}" if state != "done" else "no checkpoint.pt"
            print(f"{run.name}: skipped, {why}")
            skipped += 1
        elif not args.force and is_current(run, args.episodes):
            current += 1
        else:
            r = evaluate_run(run, args.episodes)
            print(f"{run.name}: return {r['return_mean']:.1f} ± {r['return_std']:.1f} over {args.episodes} "
                  f"episodes (deterministic, update {r['update']})", flush=True)
            done += 1
    print(f"{done} evaluated, {current} already current, {skipped} skipped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "grid":
            return _grid(args)
        if args.command == "export":
            return _export(args)
        if args.command == "evaluate":
            return _evaluate(args)
        return _analysis(args)
    except ConfigError as err:
        print(f"trpo-bench {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
