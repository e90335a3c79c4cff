"""``trpo-bench train | grid | plot | report | export | evaluate``.

Exit codes, the same for every command (docs/architecture.md, "Exit codes"):

- 0: done (or nothing left to do);
- 1: an error inside trpo-bench: one line, and the traceback with ``--debug``;
- 2: bad input, refused before anything is written: bad YAML, unknown setting, wrong type,
  missing file, a damaged run store, a run another process owns;
- 3: a run failed while training; its status.json says ``failed`` and why;
- 130: interrupted; the run checkpointed and resumes with ``--resume``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from trpo_bench.config import ALGOS, ConfigError, settings_help

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_RUN_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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
    p.add_argument("--out", type=Path, help="run store root (default: runs/)")
    p.add_argument("--wandb", choices=("offline", "online", "disabled"),
                   help="W&B mode (default: offline, unless WANDB_MODE or WANDB_API_KEY says otherwise)")
    p.add_argument("--project", help="W&B project (default: trpo-bench)")
    p.add_argument("--group", help="W&B group; also the run store's grid directory (default: train)")
    p.add_argument("--tags", nargs="*", help="W&B tags")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue a run from its checkpoint with its own settings; with --steps N above its budget, "
                        "continue a finished run to N steps")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="with --resume: load a checkpoint written by trpo-bench 0.1 (which runs code the file "
                        "carries: only for a file you trust) and rewrite it in the safe format")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _add_grid(sub) -> None:
    p = sub.add_parser("grid", help="run an experiment grid (YAML)",
                       description="Expand a grid file into runs and train them in parallel; done runs are skipped, "
                                   "unfinished ones resume from their checkpoint.")
    p.add_argument("file", type=Path, help="grid YAML, e.g. experiments/quickstart.yaml")
    p.add_argument("--workers", type=int, help="parallel runs (default: the CPU count)")
    p.add_argument("--backend", choices=("local", "ray", "slurm"), default="local", help="executor (default: local)")
    p.add_argument("--ray-address", help="address of an existing Ray cluster (default: start a local one)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and where each is stored; run nothing")
    p.add_argument("--only", metavar="PATTERN", help="run only the runs whose id matches this glob pattern")
    p.add_argument("--retries", type=int, default=1, help="retries of a failed run (default: 1)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="run store root (default: runs/)")
    p.add_argument("--wandb", choices=("offline", "online", "disabled"), help="W&B mode for every run")
    p.add_argument("--no-analysis", action="store_true", help="skip the figures and report at the end")
    p.add_argument("--extend", action="store_true",
                   help="continue finished runs whose budget is below the grid's total_steps (raised since they ran)")
    from trpo_bench.grid.slurm_options import add_slurm_arguments

    add_slurm_arguments(p)


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
    p.add_argument("--done-only", action="store_true",
                   help="copy only finished runs (a grid still training: publish what is final)")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate finished runs' final policies deterministically",
                       description="Run each finished run's final policy (mean action) for a number of episodes "
                                   "and write eval.json in its directory; the protocol behind rl-baselines3-zoo's "
                                   "published returns. Runs whose eval.json is current are skipped.")
    p.add_argument("runs_dir", type=Path, nargs="+", help="run-store directories (a grid, a parent, or a run)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per run (default: 10)")
    p.add_argument("--force", action="store_true", help="evaluate again even where eval.json is current")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load checkpoints written by trpo-bench 0.1 (runs code a file carries: only for files "
                        "you trust) and rewrite them in the safe format")


def build_parser() -> argparse.ArgumentParser:
    from trpo_bench import __version__

    parser = argparse.ArgumentParser(prog="trpo-bench", description="A research harness for TRPO, NPG and PG.")
    parser.add_argument("--version", action="version", version=f"trpo-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_grid(sub)
    _add_analysis(sub)
    _add_export(sub)
    _add_evaluate(sub)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    return parser


def _train(args) -> int:
    from trpo_bench.logger import preflight
    from trpo_bench.train import RunOptions, run, run_dir_for

    if args.resume is not None:
        total_steps = _resume_arguments(args)
        options = RunOptions(progress=not args.quiet, trust_checkpoint=args.trust_checkpoint)
        options.wandb = _wandb_mode(args.wandb, preflight)
        result = run(None, options, resume_dir=args.resume, total_steps=total_steps)
    else:
        if args.trust_checkpoint:
            raise ConfigError(["--trust-checkpoint applies with --resume only"])
        flags = {k: getattr(args, k) for k in ("algo", "env_id", "seed", "total_steps") if getattr(args, k) is not None}
        cfg = _resolve_config(args, flags)
        options = RunOptions(out=args.out or Path("runs"), project=args.project or "trpo-bench", group=args.group,
                             tags=args.tags or [], progress=not args.quiet)
        result_dir = run_dir_for(cfg, options)
        if result_dir.exists():
            raise ConfigError([f"{result_dir} exists: continue it with --resume {result_dir}, or choose another --out"])
        options.wandb = _wandb_mode(args.wandb, preflight)
        result = run(cfg, options)
    if not result.last:
        print(f"{result.run_dir}: already done at {result.env_steps:,} steps ({result.updates} updates); nothing "
              "to train (raise the budget with --resume RUN --steps N)")
        return EXIT_OK
    print(f"{result.state}: {result.env_steps:,} steps, {result.updates} updates -> {result.run_dir}")
    ret = result.last.get("rollout/ep_return_mean")
    if ret is not None:
        print(f"last training return: {ret:.1f}" if math.isfinite(ret) else
              "last training return: none (no episode ended in the last update)")
    return EXIT_OK


def _wandb_mode(requested, preflight) -> str:
    mode, note = preflight(requested)
    if note:
        print(note, file=sys.stderr)
    return mode


def _resume_arguments(args) -> int | None:
    """``--steps`` for a resumed run, after refusing every option that would change it: a run
    continues with its own settings, and only its budget may be raised."""
    from trpo_bench.config import DEFAULTS, SETTINGS, coerce, parse_overrides, read_settings_file, suggest
    from trpo_bench.store import RunStore, is_run_dir

    if not is_run_dir(args.resume):
        raise ConfigError([f"--resume {args.resume}: not a run directory (no config.json and status.json)"])
    problems = RunStore(args.resume).check_records()
    if problems:
        raise ConfigError(problems)
    for flag, value in (("--out", args.out), ("--project", args.project), ("--group", args.group),
                        ("--tags", args.tags)):
        if value is not None:
            problems.append(f"{flag} does not apply with --resume: the run keeps the store and W&B names it has")
    given: dict[str, tuple[str, object]] = {}
    if args.config is not None:
        given.update({k: (f"{args.config}: {k}", v) for k, v in read_settings_file(args.config).items()})
    for name, flag in (("algo", "--algo"), ("env_id", "--env"), ("seed", "--seed"), ("total_steps", "--steps")):
        if getattr(args, name) is not None:
            given[name] = (flag, getattr(args, name))
    values, more = parse_overrides(args.overrides)
    problems += more
    given.update({k: (f"--set {k}", v) for k, v in values.items()})
    stored = RunStore(args.resume).read_settings()
    total_steps = None
    for key, (where, raw) in given.items():
        if key not in SETTINGS:
            problems.append(f"{where}: unknown setting '{key}'{suggest(str(key))}")
            continue
        try:
            value = coerce(key, raw)
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        if key == "total_steps":
            total_steps = value
            continue
        old = stored.get(key, getattr(DEFAULTS, key))
        old = tuple(old) if isinstance(old, list) else old
        if value != old:
            problems.append(f"{where}={raw}: the run was trained with {key}={old}; a resumed run keeps its "
                            "settings (only --steps may raise its budget); start a new run to change it")
    if problems:
        raise ConfigError(problems)
    return total_steps


def _resolve_config(args, flags):
    """Defaults, then the --config file, then --algo/--env/--seed/--steps, then --set."""
    from trpo_bench.config import load_run_config

    return load_run_config(args.config, args.overrides, flags)


def _grid(args) -> int:
    from trpo_bench import grid

    return grid.main(args)


def _readable_runs(paths: list[Path]) -> list[Path]:
    """The run directories under ``paths``, after checking that each one's records read:
    a damaged config.json, status.json or metrics.csv is bad input, named, for every command."""
    from trpo_bench.store import METRICS, RunStore, is_run_dir, iter_run_dirs

    missing = [f"no such directory: {p}" for p in paths if not p.is_dir()]
    if missing:
        raise ConfigError(missing)
    runs: dict[Path, None] = {}
    for p in paths:
        for run in ([p] if is_run_dir(p) else iter_run_dirs(p)):
            runs.setdefault(run, None)
    if not runs:
        raise ConfigError([f"{', '.join(map(str, paths))} holds no runs (no config.json and status.json below it)"])
    problems: list[str] = []
    for run in runs:
        store = RunStore(run)
        found = store.check_records()
        metrics = run / METRICS
        if not found and metrics.is_file():
            try:
                metrics.read_bytes().decode()
            except UnicodeDecodeError:
                found.append(f"{metrics}: not a text file (damaged)")
            else:  # every update the status counts has its one row
                found += store.check_metrics(int(store.read_status().get("updates") or 0), source="status.json")
        problems += found
    if problems:
        raise ConfigError(problems + ["move the damaged runs aside (or delete them) and run the command again"])
    return list(runs)


def _writable_dir(path: Path, option: str) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError([f"{option} {path}: is a file; name a directory"])


def _analysis(args) -> int:
    from analysis.compare import SourceError, default_out, is_wandb, run

    local = [Path(p) for p in args.runs_dir if not is_wandb(p)]
    if local:
        _readable_runs(local)
    _writable_dir(Path(args.out) if args.out else default_out(args.runs_dir[0]), "--out")

    try:
        paths = run(args.command, args.runs_dir, args.out, args.baseline)
    except SourceError as err:
        raise ConfigError([str(err)]) from None
    for path in (paths if args.command == "plot" else paths[-1:]):
        print(path)
    return 0


def _export(args) -> int:
    from trpo_bench.store import export_runs

    _readable_runs([args.runs_dir])
    _writable_dir(args.dest, "DEST")
    written = export_runs(args.runs_dir, args.dest, done_only=args.done_only)
    size = sum(p.stat().st_size for p in written)
    print(f"{len(written)} files, {size / 1e6:.1f} MB -> {args.dest}")
    return 0


def _evaluate(args) -> int:
    from trpo_bench.evaluate import evaluate_run, is_current
    from trpo_bench.store import CHECKPOINT, RunStore

    if args.episodes < 1:
        raise ConfigError([f"--episodes must be >= 1; got {args.episodes}"])
    runs = _readable_runs([Path(p) for p in args.runs_dir])
    done = current = skipped = 0
    for run in runs:
        state = RunStore(run).read_status().get("state")
        if state != "done" or not (run / CHECKPOINT).is_file():
            why = f"the run is {state}" if state != "done" else "no checkpoint.pt"
            print(f"{run.name}: skipped, {why}")
            skipped += 1
        elif not args.force and is_current(run, args.episodes):
            current += 1
        else:
            r = evaluate_run(run, args.episodes, trust_checkpoint=args.trust_checkpoint)
            print(f"{run.name}: return {r['return_mean']:.1f} ± {r['return_std']:.1f} over {args.episodes} "
                  f"episodes (deterministic, update {r['update']})", flush=True)
            done += 1
    print(f"{done} evaluated, {current} already current, {skipped} skipped")
    return 0


COMMANDS = {"train": _train, "grid": _grid, "export": _export, "evaluate": _evaluate,
            "plot": _analysis, "report": _analysis}


def main(argv: list[str] | None = None) -> int:
    from trpo_bench.train import Interrupted, RunFailed

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"trpo-bench {args.command}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunFailed as err:
        if args.debug and err.__cause__ is not None:
            import traceback

            traceback.print_exception(err.__cause__)
        print(f"trpo-bench {args.command}: run failed: {err.reason}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except (Interrupted, KeyboardInterrupt):
        if not isinstance(sys.exc_info()[1], Interrupted):
            print("aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and closed
        sys.stderr.close()
        return EXIT_OK
    except Exception as err:
        if args.debug:
            raise
        text = str(err).strip().splitlines()
        print(f"trpo-bench {args.command}: internal error: {type(err).__name__}"
              f"{': ' + text[0] if text else ''} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
