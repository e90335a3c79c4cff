"""Executors: where a grid's tasks run. The launcher talks to every backend through :class:`Executor`.

A task is the dict :func:`trpo_bench.grid.worker.run_task` takes; its result is the dict that
function returns (``outcome``, ``error``, ...), or an outcome the executor reports in its place
(``crashed``: the worker, task or node died).
"""

from __future__ import annotations

import os
from typing import Any, Hashable, Protocol

from trpo_bench.config import ConfigError
from trpo_bench.grid.worker import init_local_worker, run_task

Task = dict[str, Any]
Result = dict[str, Any]


class Executor(Protocol):
    """What the launcher needs from a backend."""

    name: str
    capacity: int  # tasks the launcher keeps in flight at once
    broken: bool  # a worker died and took its pool down; recover() before submitting again
    keeps_running: bool  # tasks outlive the launcher (SLURM): a stop leaves them running, the launcher leaves

    def submit(self, tasks: list[Task]) -> list[Hashable]:
        """Start the tasks; one handle per task, in order."""

    def wait(self, handles: list[Hashable], timeout: float) -> list[Hashable]:
        """The handles among ``handles`` whose task has ended (waiting up to ``timeout`` s for one)."""

    def result(self, handle: Hashable) -> Result:
        """The result of an ended task."""

    def recover(self) -> None:
        """Make the executor usable again after ``broken``."""

    def abort(self, handles: list[Hashable]) -> None:
        """Stop the tasks now, without waiting for a checkpoint."""

    def close(self) -> None:
        """Release the executor's workers; tasks have ended."""

class LocalExecutor:
    """A process pool ('spawn': torch and fork do not mix); one run per task."""

    name = "local"
    keeps_running = False

    def __init__(self, workers: int):
        self.workers = self.capacity = workers
        self._start()

    def _start(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                        initializer=init_local_worker, initargs=(os.getpid(), self._cpu_share()))
        self.broken = False

    def _cpu_share(self) -> int:
        """The CPUs each worker's run may use (its env slices, its value fit): the launcher's, split evenly."""
        from trpo_bench.envs import available_cpus

        return max(1, available_cpus() // self.workers)

    def submit(self, tasks: list[Task]) -> list[Hashable]:
        return [self.pool.submit(run_task, task) for task in tasks]

    def wait(self, handles: list, timeout: float) -> list:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle) -> dict[str, Any]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return handle.result()
        except BrokenProcessPool as err:
            self.broken = True
            return {"outcome": "crashed", "error": f"a worker process died ({err})"}
        except Exception as err:
            return {"outcome": "crashed", "error": f"{type(err).__name__}: {err}"}

    def recover(self) -> None:
        """After a worker died: wait for the old pool's workers to leave, then a new pool."""
        if self.broken:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self._start()

    def abort(self, handles: list) -> None:
        """Kill the workers now: runs lose the updates since their last checkpoint."""
        for p in list(getattr(self.pool, "_processes", {}).values()):
            try:
                p.kill()
            except Exception:
                pass
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """One Ray task per run (num_cpus=1). Ray re-executes a task whose worker or node died
    (max_retries); the re-executed task resumes from the run's checkpoint."""

    name = "ray"
    keeps_running = False

    def __init__(self, address: str | None, workers: int | None, retries: int):
        try:
            import ray
        except ImportError:
            raise ConfigError(["--backend ray: ray is not installed (pip install 'ray[default]')"]) from None
        self.ray = ray
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        except Exception as err:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ConfigError([f"--backend ray: cannot start or reach {where}: "
                               f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"]) from None
        self.capacity = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # One CPU per task: its envs step and its value fits in line, no sidecars (env_threads: 0).
        self.remote = ray.remote(num_cpus=1, max_retries=retries,
                                 runtime_env={"env_vars": {"TRPO_BENCH_CPUS": "1"}})(run_task)
        self.broken = False

    def submit(self, tasks: list[Task]) -> list[Hashable]:
        return [self.remote.remote(task) for task in tasks]

    def wait(self, handles: list, timeout: float) -> list:
        ready, rest = self.ray.wait(handles, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return ready

    def result(self, handle) -> dict[str, Any]:
        try:
            return self.ray.get(handle)
        except Exception as err:  # the task's worker or node died more often than max_retries
            return {"outcome": "crashed", "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}

    def recover(self) -> None:
        pass

    def abort(self, handles: list) -> None:
        for h in handles:
            try:
                self.ray.cancel(h, force=True)
            except Exception:
                pass

    def close(self) -> None:
        self.ray.shutdown()

