"""What runs inside a worker: one run of a grid, with its output in the run's ``train.log``.

:func:`run_task` is the one task function of every backend (a ``spawn`` process of the local
pool, a Ray task, a SLURM array task). In a local pool worker, SIGTERM and a dead launcher stop
the run at its next update with a checkpoint.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from trpo_bench.grid import shared
from trpo_bench.grid.state import (
    DONE,
    LOG_FILE,
    NEW,
    RESTART,
    RESUMABLE,
    StopRequest,
    below_budget,
    read_status,
    run_state,
)
from trpo_bench.locks import FileLock


class _WorkerState:
    def __init__(self):
        self.stop = threading.Event()  # this process's signals (or an orphaned pool worker) stop its run
        self.training = False
        self.local = False  # a local pool worker: it leaves the process once stopped
        self.signals = False  # the run stops on this process's signals (pool worker, SLURM task)


_WORKER = _WorkerState()


def init_local_worker(parent_pid: int, cpus: int = 1) -> None:
    """Pool initializer. SIGINT is the launcher's to handle (it stops workers through a stop
    file); SIGTERM (the pool tearing down, a kill of the process group) checkpoints and exits.
    ``cpus``: this worker's share of the machine, which ``env_threads: 0`` then uses."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["TRPO_BENCH_CPUS"] = str(cpus)
    _WORKER.local = _WORKER.signals = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_worker_sigterm)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def handle_stop_signals(signums: tuple[int, ...]) -> list[int]:
    """A task process of its own (a SLURM array task): each of ``signums`` stops the run after
    its current update, with a checkpoint. Returns the list the received signals are added to."""
    received: list[int] = []

    def on_signal(signum, frame) -> None:
        received.append(signum)
        _WORKER.stop.set()

    for s in signums:
        signal.signal(s, on_signal)
    _WORKER.signals = True
    return received


def _on_worker_sigterm(signum, frame) -> None:
    _WORKER.stop.set()
    if not _WORKER.training:
        os._exit(128 + signum)


def _watch_parent(parent_pid: int) -> None:
    """A worker whose launcher died stops its run at the next checkpoint and exits."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            _WORKER.stop.set()
            if not _WORKER.training:
                os._exit(1)


@contextmanager
def _output_to(path: Path, append: bool) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o644)
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Train one run of a grid (in a worker process or a Ray task); return its outcome.

    Outcomes: done | already-done | shared (copied from a finished twin in another grid of the
    store, ``grid.shared``) | failed | interrupted | not-started (a stop came first) | locked
    (another launch holds the run's lock). The run's own record is its directory.
    """
    result: dict[str, Any] = {"run_id": task["run_id"], "outcome": "not-started", "error": None,
                              "host": socket.gethostname(), "pid": os.getpid()}
    stop = StopRequest(task["stop_path"])
    if _WORKER.signals:
        stop.flag = _WORKER.stop
    if stop.is_set():
        return result
    lock = FileLock(task["lock_path"])
    # A launcher's momentary probe may hold the lock; wait briefly before calling it taken.
    if not lock.acquire(wait=2.0, note=f"grid {task['grid']}"):
        result.update(outcome="locked", error=f"locked by {lock.holder()}")
        return result
    try:
        run_dir = Path(task["run_dir"])
        state = run_state(run_dir)
        if state == DONE and task.get("extend") and below_budget(run_dir, task["config"]["total_steps"]):
            state = RESUMABLE
        if state == DONE:
            result["outcome"] = "already-done"
            return result
        if state == RESTART:  # started before, no checkpoint: start over, keeping only the log
            for p in run_dir.iterdir():
                if p.name != LOG_FILE:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        out = Path(task["out"])
        if state in (NEW, RESTART) and _copied_from_twin(task, run_dir, out, result):
            return result
        run_dir.mkdir(parents=True, exist_ok=True)
        with _output_to(run_dir / LOG_FILE, append=True):
            outcome, error, retryable = _train(task, run_dir, resume=state == RESUMABLE, stop=stop, lock=lock)
        result.update(outcome=outcome, error=error)
        if outcome == "done":
            _enter_for_twins(out, run_dir)
        if outcome == "failed":  # train.run records whether a rerun can change anything
            result["retryable"] = retryable and (read_status(run_dir) or {}).get("retryable") is not False
    finally:
        lock.release()
    if _WORKER.local and _WORKER.stop.is_set():
        os._exit(1)  # SIGTERM or orphaned: the launcher is gone or tearing the pool down
    return result


def _copied_from_twin(task: dict[str, Any], run_dir: Path, out: Path, result: dict[str, Any]) -> bool:
    """Copy a finished twin's record into ``run_dir`` instead of training (``grid.shared``);
    True when it did, with ``result`` updated."""
    from trpo_bench.logger import wandb_id
    from trpo_bench.train import versions

    twin = shared.find(out, shared.share_key(task["config"], versions()), task["config"], run_dir)
    if twin is None:
        return False
    meta = {"grid": task["grid"], "run_id": task["run_id"], "axes": task["axes"], "wandb_group": task["grid"],
            "wandb_id": wandb_id(run_dir, task["run_id"], task["grid"])}
    if not shared.copy_run(twin, run_dir, task["config"], meta, out):
        return False  # the twin is being extended, or changed: train this run
    source = shared.relative(twin, out)
    with _output_to(run_dir / LOG_FILE, append=True):
        print(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {task['run_id']}: the same settings and seed finished "
              f"as {source}; its record is copied, not trained again", flush=True)
    result.update(outcome="shared", shared_from=source)
    return True


def _enter_for_twins(out: Path, run_dir: Path) -> None:
    """Enter a finished run for other grids' twins; a store that cannot take the entry costs
    the sharing, not the run."""
    try:
        shared.record(out, run_dir)
    except OSError as err:
        print(f"note: {run_dir.name} is not entered for runs shared between grids ({err})", flush=True)


def _train(task: dict[str, Any], run_dir: Path, resume: bool, stop: StopRequest,
           lock: FileLock) -> tuple[str, str | None, bool]:
    """(outcome, error, whether a rerun may succeed). The run's lock is held here and handed in."""
    from trpo_bench.config import ConfigError, build_config
    from trpo_bench.train import Interrupted, RunFailed, RunOptions, run

    print(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resuming' if resume else 'starting'} {task['run_id']} "
          f"(grid {task['grid']}, pid {os.getpid()} on {socket.gethostname()})", flush=True)
    cfg, problems = build_config(task["config"], where="grid")
    if cfg is None:
        return "failed", "; ".join(problems), False
    options = RunOptions(out=Path(task["out"]), grid=task["grid"], run_id=task["run_id"], axes=task["axes"],
                         wandb=task["wandb"], group=task["grid"], progress=True, progress_interval=10.0,
                         handle_signals=False, stop=stop, lock=lock)
    _WORKER.training = True
    try:
        # A resumed run continues to the grid's budget: equal, or raised with --extend.
        run(cfg, options, resume_dir=run_dir if resume else None, total_steps=cfg.total_steps if resume else None)
        return "done", None, True
    except (Interrupted, KeyboardInterrupt):
        return "interrupted", None, True
    except ConfigError as err:  # a damaged store or a refused resume: a rerun meets the same
        print(err, flush=True)
        return "failed", " ".join(err.problems), False
    except RunFailed as err:
        print(f"run failed: {err.reason}", flush=True)
        return "failed", err.reason, err.retryable
    except Exception as err:
        traceback.print_exc()
        return "failed", "".join(traceback.format_exception_only(type(err), err)).strip(), True
    finally:
        _WORKER.training = False
        print(flush=True)

