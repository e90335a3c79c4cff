"""``trpo-bench grid``: check a grid, schedule its runs on an executor, retry, show progress, summarize.

Done runs are skipped, unfinished ones resume from their checkpoint, so a relaunch of the same
command finishes a grid that was interrupted or killed.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import Hashable

from trpo_bench import signals as stop_signals
from trpo_bench.config import ConfigError
from trpo_bench.grid import shared
from trpo_bench.grid.executors import Executor, LocalExecutor, RayExecutor, Task
from trpo_bench.grid.progress import GridSteps, fmt_duration_or_dash, fmt_return, format_table
from trpo_bench.grid.slurm import SlurmExecutor, live_tasks
from trpo_bench.grid.slurm_options import OPTIONS, SlurmOptions, check_cluster, with_command_line
from trpo_bench.grid.spec import Grid, GridRun, load_grid, select, value_key
from trpo_bench.grid.state import (
    DONE,
    GRID_LOCK,
    GRID_RECORD,
    LOCK_DIR,
    LOCKED,
    LOG_FILE,
    NEW,
    RESTART,
    RESUMABLE,
    alive,
    below_budget,
    probe_states,
    read_status,
    run_lock,
    run_summary,
    status_error,
    stored_config_problems,
)
from trpo_bench.locks import FileLock
from trpo_bench.logger import preflight
from trpo_bench.progress import fmt_steps
from trpo_bench.rundir import read_json_or_none
from trpo_bench.store import write_json

QUEUED = "queued"  # a SLURM task of an earlier launch is queued or running for the run

# Exit codes of ``trpo-bench grid`` besides 0 (all selected runs done) and 2 (bad grid file).
EXIT_FAILED = 3  # a run failed after its retries (the exit code of a failed `train` run)
EXIT_LOCKED = 4  # no failure, but runs held by another process were skipped
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM: runs stopped at a checkpoint; rerun the command to resume


def main(args) -> int:
    """``trpo-bench grid``: check, then train every run of a grid file (see docs/grids.md)."""
    problems = []
    if args.workers is not None and args.workers < 1:
        problems.append(f"--workers must be >= 1; got {args.workers}")
    if args.retries is not None and args.retries < 0:
        problems.append(f"--retries must be >= 0; got {args.retries}")
    if args.ray_address and args.backend != "ray":
        problems.append("--ray-address needs --backend ray")
    slurm_flags = [flag for name, flag in {**OPTIONS, "detach": "--detach"}.items()
                   if getattr(args, name, None) not in (None, [], False)]
    if slurm_flags and args.backend != "slurm":
        problems.append(f"{', '.join(slurm_flags)} need{'s' if len(slurm_flags) == 1 else ''} --backend slurm")
    if problems:
        raise ConfigError(problems)

    grid = load_grid(args.file)
    for w in grid.warnings:
        print(f"warning: {w}", file=sys.stderr)
    runs = select(grid.runs, args.only)
    if not runs:
        hint = ""
        if select(grid.runs, ",".join(f"*{g.strip()}" for g in args.only.split(","))):
            hint = "; a glob matches the whole run id, so start it with '*' to match its end"
        raise ConfigError([f"--only {args.only!r} matches none of the {len(grid.runs)} runs "
                           f"(e.g. {grid.runs[0].run_id}){hint}"], str(args.file))
    grid_dir = Path(args.out) / grid.name
    stored = stored_config_problems(runs, grid_dir, extend=args.extend)
    if stored:
        raise ConfigError(stored, str(args.file))

    slurm = None
    if args.backend == "slurm":
        slurm, problems = with_command_line(grid.slurm, args, grid.source)
        problems = problems or check_cluster(slurm)
        if problems:
            raise ConfigError(problems, str(args.file))
    if not args.dry_run:
        unwritable = _unwritable(grid_dir)
        if unwritable:
            raise ConfigError([unwritable], str(args.file))
    states = probe_states(grid_dir, [r.run_id for r in runs])
    if args.extend:  # finished runs below the grid's budget continue to it
        states.update({r.run_id: RESUMABLE for r in runs
                       if states[r.run_id] == DONE and below_budget(grid_dir / r.run_id, r.config.total_steps)})
    if not args.dry_run:
        args.wandb, note = preflight(args.wandb)  # once, before any run starts
        if note:
            print(note, file=sys.stderr)
    combos = len(grid.runs) // max(len(grid.seeds), 1)
    print(f"grid {grid.name} ({grid.source}): {len(grid.runs)} runs = {combos} combinations x "
          f"{len(grid.seeds)} seeds" + (f"; {len(runs)} selected by --only" if len(runs) != len(grid.runs) else "")
          + f" -> {grid_dir}/")
    if args.dry_run:
        print(format_table(["state", "run id", "directory"],
                           [[states[r.run_id], r.run_id, str(grid_dir / r.run_id)] for r in runs]))
        counts = {s: sum(1 for v in states.values() if v == s) for s in (NEW, DONE, RESUMABLE, RESTART, LOCKED)}
        print(", ".join(f"{n} {s}" for s, n in counts.items() if n)
              + "  (restart: started without a checkpoint, starts over; locked: another launch is training it)")
        return 0
    return _Launch(args, grid, runs, grid_dir, states, slurm).run()


def _unwritable(grid_dir: Path) -> str | None:
    """Why the run store cannot be written (checked before anything starts or is submitted)."""
    probe = grid_dir / f".write-test-{socket.gethostname()}-{os.getpid()}"
    try:
        grid_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        return f"--out {grid_dir.parent}: cannot write the run store {grid_dir}/ ({err.strerror or err})"
    return None


class _Launch:
    """One ``trpo-bench grid`` launch: schedule, retry, show progress, stop on a signal."""

    def __init__(self, args, grid: Grid, runs: list[GridRun], grid_dir: Path, states: dict[str, str],
                 slurm: SlurmOptions | None = None):
        self.args, self.grid, self.runs, self.grid_dir, self.states = args, grid, runs, grid_dir, states
        self.slurm = slurm
        self.run_dirs = {r.run_id: grid_dir / r.run_id for r in runs}
        self.outcome: dict[str, str] = {}  # run id -> final outcome of this launch
        self.errors: dict[str, str] = {}
        self.stopping = False
        self.aborted = False

    # ---------------------------------------------------------------- entry
    def run(self) -> int:
        self.grid_dir.mkdir(parents=True, exist_ok=True)
        record = json.loads(json.dumps(self.grid.record(), default=str))
        if read_json_or_none(self.grid_dir / GRID_RECORD) != record:  # unchanged, it keeps its time
            write_json(self.grid_dir / GRID_RECORD, record)
        try:  # runs finished before a setting was added are entered under today's keys
            shared.reindex(Path(self.args.out))
        except OSError as err:
            print(f"note: finished runs are not entered for sharing between grids ({err})", file=sys.stderr)
        grid_lock: FileLock | None = FileLock(self.grid_dir / GRID_LOCK)
        if not grid_lock.acquire(note=resume_command()):
            print(f"note: another launch of this grid is running ({grid_lock.holder()}); runs it is "
                  "training are skipped, the others are shared between the launches", file=sys.stderr)
            grid_lock = None
        stop_path = self.grid_dir / LOCK_DIR / f"stop-{socket.gethostname()}-{os.getpid()}"
        if grid_lock is not None:
            self._remove_stale_stop_files()
        try:
            return self._run(stop_path)
        finally:
            if stop_path.exists():
                stop_path.unlink()
            if grid_lock is not None:
                grid_lock.release()

    def _remove_stale_stop_files(self) -> None:
        host = socket.gethostname()
        for p in (self.grid_dir / LOCK_DIR).glob("stop-*"):
            h, _, pid = p.name[len("stop-"):].rpartition("-")
            if h == host and pid.isdigit() and not alive(int(pid)):
                p.unlink(missing_ok=True)

    def _run(self, stop_path: Path) -> int:
        args = self.args
        if args.backend == "slurm":  # a run its SLURM task is training is not another launch's
            for rid in live_tasks(self.grid_dir, [r.run_id for r in self.runs]):
                if self.states[rid] != DONE:
                    self.states[rid] = QUEUED
        order = self._execution_order()
        todo = [r for r in order if self.states[r.run_id] in (NEW, RESUMABLE, RESTART, QUEUED)]
        locked = [r for r in self.runs if self.states[r.run_id] == LOCKED]
        n = {s: sum(1 for v in self.states.values() if v == s)
             for s in (DONE, RESUMABLE, RESTART, NEW, LOCKED, QUEUED)}
        for r in locked:
            holder = run_lock(self.grid_dir, r.run_id).holder()
            self.outcome[r.run_id] = "locked"
            self.errors[r.run_id] = f"locked by {holder}"
            print(f"skipping {r.run_id}: being trained by another launch ({holder})", file=sys.stderr)
        workers = min(args.workers or os.cpu_count() or 1, max(len(todo), 1))
        plan = f"{n[DONE]} done (skipped), {n[RESUMABLE]} to resume, {n[NEW] + n[RESTART]} to start"
        if n[QUEUED]:
            plan += f", {n[QUEUED]} queued or running in SLURM (attaching)"
        if n[LOCKED]:
            plan += f", {n[LOCKED]} locked by another launch"
        if todo and args.backend == "local":
            plan += f"; {workers} worker processes"
        elif todo and args.backend == "ray":
            plan += f"; Ray {'cluster at ' + args.ray_address if args.ray_address else 'started locally'}"
        elif todo:
            plan += f"; SLURM partition {self.slurm.partition or '(default)'}" + \
                    (f", at most {args.workers} at once" if args.workers else "")
        print(plan, flush=True)
        interrupted = False
        if todo:
            executor = self._executor(workers)
            interrupted = self._schedule(todo, executor, None if executor.keeps_running else stop_path)
            if getattr(args, "detach", False):
                return self._detached(executor)
        return self._report(interrupted)

    def _detached(self, executor) -> int:
        jobs = " ".join(executor.job_ids())
        print(f"submitted: SLURM job {jobs}; the same command attaches to it and shows progress "
              f"(squeue -j {jobs.replace(' ', ',')}; scancel {jobs} cancels it)")
        return 0

    def _executor(self, workers: int) -> Executor:
        if self.args.backend == "ray":
            return RayExecutor(self.args.ray_address, self.args.workers, self._retries())
        if self.args.backend == "slurm":
            return SlurmExecutor(self.grid_dir, self.slurm, self.args.workers, f"trpo-{self.grid.name}")
        return LocalExecutor(workers)

    def _retries(self) -> int:
        return self.args.retries if self.args.retries is not None else 1

    def _execution_order(self) -> list[GridRun]:
        """Seed-major (every combination's first seed, then the second, ...): a partial grid
        already covers every combination, and long and short tasks mix on the workers."""
        seed_pos = {s: i for i, s in enumerate(self.grid.seeds)}
        combo_pos: dict[str, int] = {}
        for r in self.runs:
            combo_pos.setdefault(value_key(r.axes), len(combo_pos))
        return sorted(self.runs, key=lambda r: (seed_pos.get(r.config.seed, 0), combo_pos[value_key(r.axes)]))

    # ---------------------------------------------------------------- scheduling
    def _task(self, run: GridRun, stop_path: Path | None) -> Task:
        return {"run_id": run.run_id, "grid": self.grid.name, "config": run.config.to_dict(), "axes": run.axes,
                "out": str(Path(self.args.out).resolve()), "run_dir": str(self.run_dirs[run.run_id].resolve()),
                "lock_path": str(run_lock(self.grid_dir, run.run_id).path.resolve()),
                "stop_path": str(stop_path.resolve()) if stop_path else None, "wandb": self.args.wandb,
                "extend": bool(getattr(self.args, "extend", False))}

    def _schedule(self, todo: list[GridRun], executor: Executor, stop_path: Path | None) -> bool:
        retries = self._retries()
        pending = list(todo)
        attempts = {r.run_id: 0 for r in todo}
        by_id = {r.run_id: r for r in todo}
        inflight: dict[Hashable, str] = {}
        progress = GridSteps(self.grid.name, todo, self.run_dirs)
        finished = 0
        old = self._install_signals(stop_path)
        try:
            while pending or inflight:
                if self.stopping and executor.keeps_running:
                    break  # SLURM keeps the tasks; a relaunch attaches to them
                free = executor.capacity - len(inflight)
                if pending and free > 0 and not self.stopping:
                    batch, pending = pending[:free], pending[free:]
                    for run in batch:
                        attempts[run.run_id] += 1
                        progress.running.add(run.run_id)
                    handles = executor.submit([self._task(run, stop_path) for run in batch])
                    inflight.update({h: run.run_id for h, run in zip(handles, batch)})
                    if getattr(self.args, "detach", False):
                        return False
                if not inflight:
                    break
                for handle in executor.wait(list(inflight), timeout=0.5):
                    rid = inflight.pop(handle)
                    progress.running.discard(rid)
                    res = executor.result(handle)
                    outcome, error = res.get("outcome"), res.get("error")
                    progress.refresh(rid)
                    if outcome in ("failed", "crashed") and res.get("retryable", True) \
                            and attempts[rid] <= retries and not self.stopping:
                        progress.event(f"failed   {rid}: {error}; log {self.run_dirs[rid] / LOG_FILE}; "
                                       f"retrying ({attempts[rid]}/{retries})")
                        pending.insert(0, by_id[rid])
                        continue
                    self.outcome[rid], self.errors[rid] = outcome, error or ""
                    if outcome in ("done", "already-done", "shared", "failed", "crashed", "locked", "cancelled"):
                        finished += 1
                    if outcome in ("done", "already-done", "shared"):
                        progress.done += 1
                        s = run_summary(self.run_dirs[rid])
                        note = {"already-done": "  (by another launch)",
                                "shared": f"  (shared: copied from {res.get('shared_from')})"}.get(outcome, "")
                        progress.event(f"[{finished}/{len(todo)}] done     {rid}  return {fmt_return(s['return'])}"
                                       + note)
                    elif outcome in ("failed", "crashed"):
                        progress.failed += 1
                        progress.event(f"[{finished}/{len(todo)}] FAILED   {rid}: {error}; "
                                       f"log {self.run_dirs[rid] / LOG_FILE}")
                    elif outcome in ("locked", "cancelled"):
                        progress.event(f"[{finished}/{len(todo)}] {outcome:<8} {rid}: {error}")
                    elif outcome == "interrupted":
                        progress.event(f"stopped  {rid} at {fmt_steps(progress.steps[rid])} steps (checkpoint)")
                if executor.broken and not self.stopping:
                    executor.recover()
                progress.tick()
            progress.finish()
        except KeyboardInterrupt:
            self.aborted = True
        finally:
            stop_signals.restore(old)
            if self.aborted:
                executor.abort(list(inflight))
                for rid in inflight.values():
                    self.outcome[rid] = "aborted"
            else:
                executor.close()
        return self.stopping or self.aborted

    def _install_signals(self, stop_path: Path | None) -> dict | None:
        def on_signal(signum, frame):
            if self.stopping:  # second signal: abort without waiting for checkpoints
                raise KeyboardInterrupt
            self.stopping = True
            if stop_path is None:  # SLURM: the tasks are the cluster's; only the launcher leaves
                print(f"\n{signal.Signals(signum).name}: leaving the SLURM tasks running", file=sys.stderr, flush=True)
                return
            stop_path.parent.mkdir(parents=True, exist_ok=True)
            stop_path.touch()
            print(f"\n{signal.Signals(signum).name}: stopping; running runs checkpoint after their current update "
                  "(send it again to abort now)", file=sys.stderr, flush=True)

        return stop_signals.install(on_signal)

    # ---------------------------------------------------------------- the end
    def _report(self, interrupted: bool) -> int:
        rows, failed, locked, cancelled, not_done = [], [], [], [], []
        for run in self.runs:
            rid = run.run_id
            s = run_summary(self.run_dirs[rid])
            state = s["state"]
            outcome = self.outcome.get(rid)
            if outcome in ("locked", "cancelled"):
                state = outcome
                (locked if outcome == "locked" else cancelled).append(rid)
            elif outcome in ("failed", "crashed") and state != "failed":
                state = "failed"
            if state == "failed":
                failed.append(rid)
            if state != "done":
                not_done.append(rid)
            rows.append([rid, state, f"{int(s['env_steps']):,}", fmt_return(s["return"]),
                         fmt_duration_or_dash(s["wall"])])
        print()
        print(format_table(["run id", "state", "steps", "final return", "wall"], rows, right={2, 3, 4}))
        done = len(self.runs) - len(not_done)
        n_shared = sum(1 for o in self.outcome.values() if o == "shared")
        print(f"\n{done}/{len(self.runs)} runs done"
              + (f" ({n_shared} copied from the same settings and seed in another grid)" if n_shared else "")
              + "".join(f", {len(ids)} {what}" for ids, what in
                        ((failed, "failed"), (cancelled, "cancelled"), (locked, "locked")) if ids)
              + f"; run store {self.grid_dir}/")
        # train.run marks failures that a rerun cannot change (bad input, a corrupt store, non-finite values)
        final = [rid for rid in failed if (read_status(self.run_dirs[rid]) or {}).get("retryable") is False]
        for rid in failed:
            print(f"  failed: {rid}: {self.errors.get(rid) or status_error(self.run_dirs[rid])}\n"
                  f"          log: {self.run_dirs[rid] / LOG_FILE}")
        if interrupted:
            where = ("the SLURM tasks keep running; attach to them" if self.args.backend == "slurm"
                     else "unfinished runs stopped at a checkpoint. Resume")
            print(f"\ninterrupted: {where} with the same command:\n  {resume_command()}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if not self.args.no_analysis and done:
            self._analysis()
        if len(final) < len(failed):
            print(f"\n{len(failed) - len(final)} run(s) failed; rerun the same command to retry them "
                  "(they resume from their checkpoint)", file=sys.stderr)
        if final:
            print(f"\n{len(final)} run(s) failed for a reason a rerun does not change; fix it, then rerun:",
                  file=sys.stderr)
            for rid in final:
                print(f"  {rid}: {status_error(self.run_dirs[rid])}", file=sys.stderr)
        if cancelled:
            print(f"\n{len(cancelled)} run(s) were cancelled in SLURM; rerun the same command to resume them",
                  file=sys.stderr)
        if failed or cancelled:
            return EXIT_FAILED
        if locked:
            print(f"\n{len(locked)} run(s) were being trained by another launch; rerun when it has finished",
                  file=sys.stderr)
            return EXIT_LOCKED
        return 0

    def _analysis(self) -> None:
        """Figures and report of the grid; the analysis package is optional here."""
        try:
            from analysis.report import DRAWN_FROM, REPORT, inputs_of, write_report_files
        except Exception as err:
            print(f"warning: no figures or report: the analysis package is unavailable "
                  f"({type(err).__name__}: {err})", file=sys.stderr)
            return
        out = self.grid_dir / "figures"
        inputs = inputs_of(self.grid_dir)  # before drawing: a run changing meanwhile is drawn next time
        if (out / REPORT).is_file() and read_json_or_none(out / DRAWN_FROM) == inputs:
            print(f"figures and report: current in {out}/ (no run and no analysis code changed since they were "
                  f"drawn); trpo-bench report {self.grid_dir} redraws them")
            return
        try:
            *paths, report = write_report_files([self.grid_dir], out)  # statistics computed once
        except Exception as err:
            print(f"warning: analysis failed ({type(err).__name__}: {err}); the runs are intact, retry with "
                  f"trpo-bench plot {self.grid_dir}", file=sys.stderr)
            return
        write_json(out / DRAWN_FROM, inputs)
        print(f"figures: {len(list(paths or []))} files in {out}/; report: {report}")


def resume_command() -> str:
    return " ".join(["trpo-bench"] + [shlex.quote(a) for a in sys.argv[1:]]) if sys.argv else "trpo-bench grid ..."
