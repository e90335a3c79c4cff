"""What the run store says about a grid's runs: their state, summaries, locks and stop requests.

A run writes only its own directory ``<out>/<grid>/<run_id>/``, under an exclusive ``flock`` on
``<out>/<grid>/.locks/<run_id>.lock`` (:class:`trpo_bench.locks.FileLock`); a launcher reads the
runs' ``status.json`` files and probes their locks.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from trpo_bench.config import complete_settings
from trpo_bench.locks import FileLock
from trpo_bench.store import CHECKPOINT, STATUS, RunStore

LOCK_DIR = ".locks"
GRID_RECORD = "grid.json"
GRID_LOCK = "grid.lock"
LOG_FILE = "train.log"

NEW, DONE, RESUMABLE, RESTART, LOCKED = "new", "done", "resumable", "restart", "locked"


def run_state(run_dir: Path) -> str:
    """new (no run yet) | done | resumable (has a checkpoint) | restart (started, no checkpoint)."""
    run_dir = Path(run_dir)
    status = run_dir / STATUS
    if status.is_file():
        try:
            if json.loads(status.read_text()).get("state") == "done":
                return DONE
        except (OSError, ValueError):
            pass
    if (run_dir / CHECKPOINT).is_file() and status.is_file():
        return RESUMABLE
    if run_dir.exists() and any(p.name != LOG_FILE for p in run_dir.iterdir()):
        return RESTART
    return NEW


class StopRequest:
    """Asked by train.run after each update (RunOptions.stop): a flag set in this process,
    or a stop file the launcher creates (seen by every worker, also on other Ray nodes)."""

    def __init__(self, path: str | None = None):
        self.path = path
        self.flag = threading.Event()

    def is_set(self) -> bool:
        return self.flag.is_set() or (self.path is not None and os.path.exists(self.path))


def run_summary(run_dir: Path) -> dict[str, Any]:
    """state, env_steps, final training return and wall time of a run, from its directory."""
    store = RunStore(run_dir)
    try:
        status = store.read_status() or {}
    except (OSError, ValueError):
        status = {}
    out = {"state": status.get("state", "not started"), "env_steps": status.get("env_steps", 0),
           "return": float("nan"), "wall": float("nan")}
    try:
        rows = store.read_metrics()
    except (OSError, ValueError):
        rows = []
    for row in reversed(rows):
        if row.get("rollout/ep_return_mean"):
            out["return"] = float(row["rollout/ep_return_mean"])
            break
    if rows and rows[-1].get("time/wall"):
        out["wall"] = float(rows[-1]["time/wall"])
    return out


def run_lock(grid_dir: Path, run_id: str) -> FileLock:
    return FileLock(Path(grid_dir) / LOCK_DIR / f"{run_id}.lock")


def probe_states(grid_dir: Path, run_ids: list[str]) -> dict[str, str]:
    """Each run's state, LOCKED where another process holds its lock."""
    locks = {rid: run_lock(grid_dir, rid) for rid in run_ids}
    probe = {rid: lock.is_locked() for rid, lock in locks.items()}
    if any(probe.values()):  # a process killed a moment ago may still be releasing its locks
        probe = {rid: locked and locks[rid].is_locked(wait=2.0) for rid, locked in probe.items()}
    return {rid: (LOCKED if probe[rid] else run_state(Path(grid_dir) / rid)) for rid in run_ids}


def stored_config_problems(runs: list, grid_dir: Path, extend: bool = False) -> list[str]:
    """Runs already in the store whose recorded config differs from the grid file's; with
    ``extend``, a raised ``total_steps`` is no difference (those runs continue to it)."""
    problems = []
    raised = False
    for run in runs:
        path = grid_dir / run.run_id / "config.json"
        if not path.is_file():
            continue
        try:
            saved = RunStore(path.parent).read_settings()
        except (OSError, ValueError):
            continue  # unreadable: the run has no valid start; it starts over
        want = json.loads(json.dumps(run.config.to_dict()))
        # A setting added to RunConfig after the run started resumes at its default (train.run
        # rebuilds the config from config.json), so a missing key stands for the default,
        # unless the setting changed the computation when it was added (read_settings).
        stored = complete_settings(saved)
        diff = [f"{k}: stored {stored.get(k)!r}, grid {v!r}" for k, v in want.items() if stored.get(k) != v
                and not (extend and k == "total_steps" and isinstance(stored.get(k), int) and v > stored[k])]
        raised = raised or (isinstance(stored.get("total_steps"), int) and want["total_steps"] > stored["total_steps"])
        if diff:
            problems.append(f"{path}: the stored run differs from the grid file ({'; '.join(diff[:4])}"
                            f"{'; ...' if len(diff) > 4 else ''})")
    if problems:
        more = len(problems) - 10
        problems = problems[:10] + ([f"... and {more} more runs"] if more > 0 else [])
        problems.append("a grid's runs are found again by run id; give the changed grid a new 'name', "
                        "use another --out, or delete those run directories"
                        + ("; to continue finished runs to a raised total_steps, add --extend" if raised else ""))
    return problems


def below_budget(run_dir: Path, total_steps: int) -> bool:
    """A finished run whose stored budget is below ``total_steps`` (one --extend continues)."""
    status = read_status(run_dir) or {}
    return status.get("state") == "done" and isinstance(status.get("total_steps"), int) \
        and status["total_steps"] < total_steps


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """A run's status.json, or None when it has none (yet) or it cannot be read."""
    try:
        return json.loads((Path(run_dir) / STATUS).read_text())
    except (OSError, ValueError):
        return None


def status_error(run_dir: Path) -> str:
    return (read_status(run_dir) or {}).get("error") or "?"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
