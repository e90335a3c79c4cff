"""The SLURM backend: a grid's runs as one job array, submitted through submitit.

Each array task runs :func:`slurm_task`, which trains one run with
:func:`trpo_bench.grid.worker.run_task` (resuming from its checkpoint when there is one).
SIGTERM (``scancel``, ``scontrol requeue``, preemption) and SIGUSR2 (SLURM's warning before
the time limit, ``--signal=USR2@90``) stop the run after its current update with a checkpoint;
after SIGUSR2 the task requeues itself, and the requeued task continues the run bit for bit.

The array's job ids are recorded in ``<grid>/.slurm/jobs.json`` (run id -> SLURM job id) under
a lock, so a relaunch, or a second launch at the same time, attaches to the tasks still queued
or running instead of submitting them again. submitit's files (pickled tasks, results, the
tasks' own stdout / stderr) are in ``<grid>/.slurm/``: the run store must be on a filesystem
every node sees.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Hashable

from trpo_bench.grid.executors import Result, Task
from trpo_bench.grid.slurm_options import SlurmOptions, submitit_parameters
from trpo_bench.grid.worker import handle_stop_signals, run_task
from trpo_bench.locks import FileLock
from trpo_bench.store import write_json

SLURM_DIR = ".slurm"
JOBS = "jobs.json"
# States in which a job has left for good (squeue --states=all shows them until MinJobAge).
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE", "SPECIAL_EXIT", "REVOKED", "GONE"}  # GONE: no longer known to squeue
POLL_S = 1.0


# ------------------------------------------------------------------ inside an array task

def slurm_task(task: Task) -> Result:
    """One array task: train one run; after SLURM's time-limit warning, checkpoint and requeue."""
    received = handle_stop_signals((signal.SIGTERM, signal.SIGUSR2))
    _remove_stale_result()
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():  # the allocation, where no affinity mask says it
        os.environ["TRPO_BENCH_CPUS"] = os.environ["SLURM_CPUS_PER_TASK"]
    result = run_task(task)
    if signal.SIGUSR2 in received and result["outcome"] in ("interrupted", "not-started"):
        job = _own_job_id()
        print(f"SIGUSR2 (time limit or preemption ahead): {task['run_id']} checkpointed; requeueing {job}",
              flush=True)
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
        sys.exit(0)  # not an Exception: submitit writes no result, the requeued task writes it
    return result


def _own_job_id() -> str:
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{index}" if array and index else os.environ["SLURM_JOB_ID"]


def _remove_stale_result() -> None:
    """A requeued task keeps its job id: drop the result an earlier start of it left."""
    try:
        import submitit

        submitit.JobEnvironment().paths.result_pickle.unlink(missing_ok=True)
    except Exception:
        pass


# ------------------------------------------------------------------ the launcher's side

def squeue_states(job_ids: set[str]) -> dict[str, str] | None:
    """SLURM state of each job (``123_4`` for an array task); GONE when squeue no longer knows it;
    None when squeue could not answer."""
    if not job_ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        res = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", ",".join(arrays), "-o", "%i|%T"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0 and "Invalid job id" not in res.stderr:
        return None
    seen = dict(line.split("|", 1) for line in res.stdout.split() if "|" in line)
    return {j: seen.get(j, "GONE") for j in job_ids}


def live_tasks(grid_dir: Path, run_ids: list[str]) -> dict[str, str]:
    """Runs whose recorded SLURM task is still queued or running: run id -> job id."""
    record = read_record(Path(grid_dir) / SLURM_DIR)
    recorded = {rid: record[rid]["job"] for rid in run_ids if rid in record}
    states = squeue_states(set(recorded.values())) or {}
    return {rid: job for rid, job in recorded.items() if states.get(job, "GONE") not in ENDED}


def read_record(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / JOBS).read_text())
    except (OSError, ValueError):
        return {}


class SlurmExecutor:
    """Submits tasks as one job array per call (``--workers``: the array's parallelism limit)."""

    name = "slurm"
    broken = False
    keeps_running = True  # tasks outlive the launcher: a stop (Ctrl-C) leaves them queued or running
    capacity = 1 << 30  # every run at once: SLURM queues them

    def __init__(self, grid_dir: Path, options: SlurmOptions, parallelism: int | None, job_name: str):
        try:
            import submitit
        except ImportError:
            from trpo_bench.config import ConfigError

            raise ConfigError(["--backend slurm: submitit is not installed (pip install 'trpo-bench[slurm]')"]) \
                from None
        self.folder = Path(grid_dir).resolve() / SLURM_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.executor = submitit.SlurmExecutor(folder=self.folder)
        self.executor.update_parameters(job_name=job_name, array_parallelism=parallelism or 10_000,
                                        **submitit_parameters(options))
        self.submitted: list[str] = []  # job ids (array ids) this launch submitted
        self.attached: list[str] = []  # job ids of tasks an earlier launch submitted
        self._states: dict[str, str] = {}
        self._polled = 0.0

    def submit(self, tasks: list[Task]) -> list[Hashable]:
        """Submit the runs that have no task queued or running; attach to those that have one."""
        lock = FileLock(self.folder / "submit.lock")
        if not lock.acquire(wait=300.0, note="trpo-bench grid --backend slurm: submitting"):
            raise RuntimeError(f"{lock.path} held for 5 minutes by {lock.holder()}")
        try:
            record = read_record(self.folder)
            handles = live_tasks(self.folder.parent, [t["run_id"] for t in tasks])
            self.attached += sorted(set(handles.values()))
            new = [t for t in tasks if t["run_id"] not in handles]
            if new:
                with self.executor.batch():
                    jobs = [self.executor.submit(slurm_task, t) for t in new]
                now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                for t, job in zip(new, jobs):
                    handles[t["run_id"]] = job.job_id
                    record[t["run_id"]] = {"job": job.job_id, "submitted": now}
                self.submitted.append(jobs[0].job_id.split("_")[0])
                write_json(self.folder / JOBS, record)
        finally:
            lock.release()
        return [handles[t["run_id"]] for t in tasks]

    def wait(self, handles: list[Hashable], timeout: float) -> list[Hashable]:
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() - self._polled >= POLL_S:
                states = squeue_states({str(h) for h in handles})
                self._polled = time.monotonic()
                if states is not None:
                    self._states.update(states)
            ended = [h for h in handles if self._states.get(str(h)) in ENDED]
            if ended or time.monotonic() >= deadline:
                return ended
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.0)))

    def result(self, handle: Hashable) -> Result:
        from submitit.core.utils import JobPaths

        job, state = str(handle), self._states.get(str(handle), "GONE")
        paths = JobPaths(self.folder, job_id=job, task_id=0)
        try:
            with open(paths.result_pickle, "rb") as f:
                kind, value = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):
            kind, value = None, None
        if kind == "success" and isinstance(value, dict):
            result = dict(value)
        elif kind == "error":
            last = [line for line in str(value).strip().splitlines() if line.strip()][-1:] or ["?"]
            result = {"outcome": "crashed", "error": f"SLURM task {job}: {last[0]}"}
        else:
            result = {"outcome": "crashed", "error": f"SLURM task {job} ended {state} before its run did; "
                                                     f"its log: {paths.stderr}"}
        if state == "CANCELLED" and result["outcome"] not in ("done", "already-done", "shared"):
            result = {"outcome": "cancelled", "error": f"SLURM task {job} was cancelled (scancel)"}
        return result

    def recover(self) -> None:
        pass

    def abort(self, handles: list[Hashable]) -> None:
        pass  # the tasks belong to SLURM now; `scancel` stops them

    def close(self) -> None:
        pass

    def job_ids(self) -> list[str]:
        """The job arrays this launch submitted or attached to."""
        return sorted({j.split("_")[0] for j in self.submitted + self.attached}, key=int)
