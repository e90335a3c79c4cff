"""Experiment grids: expand a YAML file into runs, check them all, train them in parallel.

A grid file (schema in docs/grids.md) is a base config, axes whose cartesian product
gives the combinations, include / exclude lists, per-combination overrides and seeds.
Every run is checked before anything starts; problems name the file and the field.

Runs are trained by :func:`run_task` in worker processes (a ``spawn`` process pool, or
one Ray task per run). A run writes only its own directory ``<out>/<grid>/<run_id>/``,
under an exclusive ``flock`` on ``<out>/<grid>/.locks/<run_id>.lock``; the launcher
writes ``<out>/<grid>/grid.json`` and reads ``status.json`` files for its progress line.
Done runs are skipped, unfinished ones resume from their checkpoint, so a relaunch of
the same command finishes a grid that was interrupted or killed.
"""

from __future__ import annotations

import collections
import difflib
import fnmatch
import itertools
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from trpo_bench import signals as stop_signals
from trpo_bench.config import DEFAULTS, SETTINGS, ConfigError, RunConfig, check_env_id, coerce, prepare, \
    read_yaml, suggest, validate
from trpo_bench.locks import FileLock
from trpo_bench.store import CHECKPOINT, STATUS, RunStore, make_run_id, safe_name, write_json

# ============================================================== the grid file

TOP_LEVEL_KEYS = ("name", "description", "base", "axes", "seeds", "include", "exclude", "overrides")
LOCK_DIR = ".locks"
GRID_RECORD = "grid.json"
GRID_LOCK = "grid.lock"
LOG_FILE = "train.log"

# Exit codes of ``trpo-bench grid`` besides 0 (all selected runs done) and 2 (bad grid file).
EXIT_FAILED = 1  # a run failed after its retries
EXIT_LOCKED = 3  # no failure, but runs held by another launch were skipped
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM: runs stopped at a checkpoint; rerun the command to resume


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: its id, its complete config and its values of the grid's axes."""

    run_id: str
    config: RunConfig
    axes: dict[str, Any]


@dataclass
class Grid:
    name: str
    source: str
    axes: dict[str, list[Any]]  # every axis (declared, or added by an include entry) -> values in order
    seeds: list[int]
    runs: list[GridRun]  # combination-major: all seeds of a combination together
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The content of ``grid.json`` (read by the analysis package)."""
        return {"name": self.name, "source": self.source, "axes": self.axes, "seeds": self.seeds,
                "runs": [r.run_id for r in self.runs]}


class _Problems:
    """Ordered, de-duplicated ``<file>: <field>: <message>`` lines."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def add(self, where: str, message: str) -> None:
        line = f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}"
        if line not in self._seen:
            self._seen.add(line)
            self.lines.append(line)


_BAD = object()  # a value that failed its check (already reported)


def _plain(value: Any) -> Any:
    """JSON-friendly form of a setting value (tuples become lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _key(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True)


def _setting_value(key: Any, value: Any, where: str, problems: _Problems) -> Any:
    """The coerced value of one setting, or _BAD after reporting why."""
    if key == "seed":
        problems.add(where, "'seed' is set by the top-level 'seeds' (a count, or a list of seeds)")
        return _BAD
    if key not in SETTINGS:
        problems.add(where, f"unknown setting '{key}'{suggest(str(key))}")
        return _BAD
    try:
        return coerce(key, value)
    except ValueError as err:
        problems.add(where, f"'{key}': {err}")
        return _BAD


def _settings_map(data: Any, where: str, problems: _Problems, allow_empty: bool = True) -> dict[str, Any]:
    """A mapping of settings, each coerced; bad entries are reported and left out."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.add(where, f"expected a mapping of settings, got {type(data).__name__}")
        return {}
    if not data and not allow_empty:
        problems.add(where, "is empty")
    out = {}
    for key, value in data.items():
        v = _setting_value(key, value, f"{where}.{key}", problems)
        if v is not _BAD:
            out[key] = v
    return out


def _alternatives(key: str, value: Any) -> list[Any]:
    """A match value is one value or a list of alternatives. For list-valued settings
    (hidden_sizes) a list of lists is the alternatives, a list of numbers one value."""
    if isinstance(DEFAULTS.to_dict().get(key), list):
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
            return list(value)
        return [value]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _match_map(data: Any, where: str, problems: _Problems) -> dict[str, list[Any]]:
    """``{setting: value or [alternatives]}`` with every alternative coerced."""
    if not isinstance(data, Mapping) or not data:
        problems.add(where, "expected a non-empty mapping {setting: value or [values]}")
        return {}
    out: dict[str, list[Any]] = {}
    for key, value in data.items():
        alts = []
        for i, alt in enumerate(_alternatives(str(key), value)):
            sub = f"{where}.{key}" if len(_alternatives(str(key), value)) == 1 else f"{where}.{key}[{i}]"
            v = _setting_value(key, alt, sub, problems)
            if v is _BAD or not _valid_alone(key, v, sub, problems):
                break
            alts.append(v)
        else:
            out[key] = alts
    return out


def _valid_alone(key: str, value: Any, where: str, problems: _Problems) -> bool:
    """A match value no run could have (max_kl: -1, an unknown env id) is a typo, not a no-op."""
    own = [m for m in validate(DEFAULTS.replace(**{key: value}), check_env=False) if f"'{key}'" in m]
    if key == "env_id":
        own += [m for m in [check_env_id(value)] if m]
    for m in own:
        problems.add(where, m)
    return not own


def _matches(match: Mapping[str, list[Any]], values: Mapping[str, Any]) -> bool:
    return all(_key(values.get(k, getattr(DEFAULTS, k))) in {_key(a) for a in alts} for k, alts in match.items())


def _seeds(data: Any, problems: _Problems) -> list[int]:
    if data is None:
        return [0]
    if isinstance(data, int) and not isinstance(data, bool):
        if data < 1:
            problems.add("seeds", f"a count of seeds must be >= 1; got {data}")
            return []
        return list(range(data))
    if isinstance(data, list) and data:
        out = []
        for i, s in enumerate(data):
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                problems.add(f"seeds[{i}]", f"a seed must be an integer >= 0; got {s!r}")
            elif s in out:
                problems.add(f"seeds[{i}]", f"seed {s} is listed twice")
            else:
                out.append(s)
        return out
    problems.add("seeds", f"expected a count (3) or a list of seeds ([0, 1, 2]); got {data!r}")
    return []


def _attribute(message: str, where: dict[str, str]) -> str:
    """The fields a config problem comes from: the settings the message quotes."""
    names = [n for n in re.findall(r"'(\w+)'", message) if n in SETTINGS]
    places = list(dict.fromkeys(where[n] for n in names if n in where))
    return ", ".join(places) if places else "base"


def load_grid(path: str | Path, check_envs: bool = True) -> Grid:
    """Read and expand a grid file; raise ConfigError listing every problem."""
    source = str(path)
    data = read_yaml(path)
    return expand(data, source, default_name=Path(path).stem, check_envs=check_envs)


def expand(data: Any, source: str = "<grid>", default_name: str = "grid", check_envs: bool = True) -> Grid:
    """Expand a parsed grid file into its runs (see docs/grids.md); raise ConfigError."""
    problems = _Problems(source)
    warnings: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"{source}: expected a mapping at the top level (name, base, axes, seeds, ...), "
                           f"got {type(data).__name__}"], source)

    # --- structure: every section checked, every value coerced, all problems kept
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            if key in SETTINGS:
                hint = f" ('{key}' is a run setting: put it under 'base' or 'axes')"
            else:
                close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (expected: {', '.join(TOP_LEVEL_KEYS)})"
            problems.add(str(key), f"unknown top-level key '{key}'{hint}")

    name = data.get("name", default_name)
    if not isinstance(name, str) or not name or safe_name(name) != name or name.startswith("."):
        problems.add("name", f"a grid name must be non-empty letters, digits and . _ = + - ; got {name!r}")
        name = safe_name(str(name)) or "grid"

    base = _settings_map(data.get("base"), "base", problems)

    axes_raw = data.get("axes") or {}
    axes: dict[str, list[tuple[int, Any]]] = {}  # axis -> [(index in the file, value)]
    if not isinstance(axes_raw, Mapping):
        problems.add("axes", f"expected a mapping {{setting: [values]}}, got {type(axes_raw).__name__}")
        axes_raw = {}
    for key, values in axes_raw.items():
        if not isinstance(values, list) or not values:
            problems.add(f"axes.{key}", f"expected a non-empty list of values, got {values!r}"
                         + (f" (write [{values}])" if not isinstance(values, list) else ""))
            continue
        good: list[tuple[int, Any]] = []
        for i, v in enumerate(values):
            c = _setting_value(key, v, f"axes.{key}[{i}]", problems)
            if c is _BAD:
                if key not in SETTINGS or key == "seed":
                    break  # one report for the axis name is enough
                continue
            if _key(c) in {_key(g) for _, g in good}:
                problems.add(f"axes.{key}[{i}]", f"value {v!r} is listed twice")
                continue
            good.append((i, c))
        if good and (key in SETTINGS and key != "seed"):
            axes[key] = good

    seeds = _seeds(data.get("seeds"), problems)

    def entries(section: str) -> list[Any]:
        raw = data.get(section) or []
        if not isinstance(raw, list):
            problems.add(section, f"expected a list of mappings, got {type(raw).__name__}")
            return []
        return raw

    includes = [_settings_map(e, f"include[{i}]", problems, allow_empty=False) for i, e in enumerate(entries("include"))]
    excludes = [_match_map(e, f"exclude[{i}]", problems) for i, e in enumerate(entries("exclude"))]
    overrides: list[tuple[dict[str, list[Any]], dict[str, Any]]] = []
    for i, e in enumerate(entries("overrides")):
        where = f"overrides[{i}]"
        if not isinstance(e, Mapping):
            problems.add(where, f"expected a mapping {{match: {{...}}, set: {{...}}}}, got {type(e).__name__}")
            continue
        for k in e:
            if k not in ("match", "set"):
                problems.add(f"{where}.{k}", f"unknown key '{k}' (an override has 'match' and 'set')")
        match = _match_map(e.get("match"), f"{where}.match", problems)
        settings = _settings_map(e.get("set"), f"{where}.set", problems, allow_empty=False)
        for k in list(settings):
            if k in axes_raw:
                problems.add(f"{where}.set.{k}", f"'{k}' is a grid axis; an override would make runs of "
                                                 "different axis values identical")
                del settings[k]
        overrides.append((match, settings))

    # --- combinations: the product minus exclusions, plus inclusions
    combos: list[tuple[dict[str, Any], dict[str, str]]] = []  # (values, where each value comes from)
    names = list(axes)
    hits = [0] * len(excludes)
    for picks in itertools.product(*(axes[k] for k in names)):
        values = {k: v for k, (_, v) in zip(names, picks)}
        where = {k: f"axes.{k}[{i}]" for k, (i, _) in zip(names, picks)}
        full = {**base, **values}
        dropped = False
        for j, ex in enumerate(excludes):
            if ex and _matches(ex, full):
                hits[j] += 1
                dropped = True
        if not dropped:
            combos.append((values, where))
    for j, n in enumerate(hits):
        if n == 0 and excludes[j]:
            warnings.append(f"{source}: exclude[{j}] matches no combination of the axes")
    for i, inc in enumerate(includes):
        if inc:
            combos.append((dict(inc), {k: f"include[{i}].{k}" for k in inc}))

    # --- runs: base, then matching overrides, then the combination's own values, for every seed
    override_hits = [0] * len(overrides)
    candidates: list[tuple[RunConfig, dict[str, str]]] = []
    for values, where_combo in combos:
        merged, where = dict(base), {k: f"base.{k}" for k in base}
        full = {**base, **values}
        for j, (match, settings) in enumerate(overrides):
            if match and _matches(match, full):
                override_hits[j] += 1
                for k, v in settings.items():
                    if k not in values:
                        merged[k], where[k] = v, f"overrides[{j}].set.{k}"
        merged.update(values)
        where.update(where_combo)
        for seed in seeds:
            cfg = DEFAULTS.replace(**merged, seed=seed)
            for message in validate(cfg, check_env=False):
                problems.add(_attribute(message, where), message)
            candidates.append((cfg, where))
    for j, n in enumerate(override_hits):
        if n == 0 and overrides[j][0]:
            warnings.append(f"{source}: overrides[{j}] matches no combination")
    if not candidates and not problems.lines:
        problems.add("", "the grid has no runs (every combination excluded?)")

    if check_envs:
        _check_envs(candidates, problems)

    # --- axes of the grid, run ids from the axes that vary
    grid_axes = list(names)
    for inc in includes:
        grid_axes += [k for k in inc if k not in grid_axes]
    axis_values: dict[str, list[Any]] = {k: [] for k in grid_axes}
    for cfg, _ in candidates:
        for k in grid_axes:
            v = _plain(getattr(cfg, k))
            if _key(v) not in {_key(x) for x in axis_values[k]}:
                axis_values[k].append(v)
    id_keys = [k for k in grid_axes if len(axis_values[k]) > 1]

    runs: dict[str, GridRun] = {}
    for cfg, where in candidates:
        rid = make_run_id(cfg, keys=id_keys)
        run = GridRun(rid, cfg, {k: _plain(getattr(cfg, k)) for k in grid_axes})
        if rid in runs:
            if runs[rid].config != cfg:
                problems.add(_attribute(" ".join(f"'{k}'" for k in where), where),
                             f"two combinations get the same run id '{rid}' with different settings")
            continue  # an include entry repeating a combination of the product
        runs[rid] = run

    if problems.lines:
        raise ConfigError(problems.lines, source)
    return Grid(name=name, source=source, axes=axis_values, seeds=seeds, runs=list(runs.values()), warnings=warnings)


def _check_envs(candidates: list[tuple[RunConfig, dict[str, str]]], problems: _Problems) -> None:
    """Each env id once: registered, and with spaces the policies support (config.prepare)."""
    seen: dict[str, str] = {}
    for cfg, where in candidates:
        seen.setdefault(cfg.env_id, where.get("env_id", "base.env_id"))
    for env_id, where in seen.items():
        problem = check_env_id(env_id)
        if problem:
            problems.add(where, problem)
            continue
        try:
            prepare(DEFAULTS.replace(env_id=env_id))
        except ConfigError as err:
            for p in err.problems:
                problems.add(where, p)
        except Exception as err:  # an env that cannot even be built
            problems.add(where, f"'env_id' {env_id!r} cannot be created: {type(err).__name__}: {err}")


def select(runs: list[GridRun], pattern: str | None) -> list[GridRun]:
    """Runs whose id matches ``pattern``: comma-separated globs; a pattern without
    ``* ? [`` matches as a substring (``--only trpo`` selects every TRPO run)."""
    if not pattern:
        return list(runs)
    globs = [p.strip() for p in pattern.split(",") if p.strip()]
    globs = [g if any(c in g for c in "*?[") else f"*{g}*" for g in globs]
    return [r for r in runs if any(fnmatch.fnmatchcase(r.run_id, g) for g in globs)]


# ============================================================== run state and locks

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


# ============================================================== the worker side

class _WorkerState:
    def __init__(self):
        self.stop = threading.Event()  # SIGTERM or an orphaned worker: stop, then leave the process
        self.training = False
        self.local = False


_WORKER = _WorkerState()


def _init_local_worker(parent_pid: int) -> None:
    """Pool initializer. SIGINT is the launcher's to handle (it stops workers through a stop
    file); SIGTERM (the pool tearing down, a kill of the process group) checkpoints and exits."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    _WORKER.local = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_worker_sigterm)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


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

    Outcomes: done | already-done | failed | interrupted | not-started (a stop came first) |
    locked (another launch holds the run's lock). The run's own record is its directory.
    """
    result: dict[str, Any] = {"run_id": task["run_id"], "outcome": "not-started", "error": None,
                              "host": socket.gethostname(), "pid": os.getpid()}
    stop = StopRequest(task["stop_path"])
    if _WORKER.local:
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
        if state == DONE:
            result["outcome"] = "already-done"
            return result
        if state == RESTART:  # started before, no checkpoint: start over, keeping only the log
            for p in run_dir.iterdir():
                if p.name != LOG_FILE:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
        with _output_to(run_dir / LOG_FILE, append=True):
            outcome, error = _train(task, run_dir, resume=state == RESUMABLE, stop=stop)
        result.update(outcome=outcome, error=error)
    finally:
        lock.release()
    if _WORKER.local and _WORKER.stop.is_set():
        os._exit(1)  # SIGTERM or orphaned: the launcher is gone or tearing the pool down
    return result


def _train(task: dict[str, Any], run_dir: Path, resume: bool, stop: StopRequest) -> tuple[str, str | None]:
    from trpo_bench.config import build_config
    from trpo_bench.train import Interrupted, RunOptions, run

    print(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resuming' if resume else 'starting'} {task['run_id']} "
          f"(grid {task['grid']}, pid {os.getpid()} on {socket.gethostname()})", flush=True)
    cfg, problems = build_config(task["config"], where="grid")
    if cfg is None:
        return "failed", "; ".join(problems)
    options = RunOptions(out=Path(task["out"]), grid=task["grid"], run_id=task["run_id"], axes=task["axes"],
                         wandb=task["wandb"], group=task["grid"], progress=True, progress_interval=10.0,
                         handle_signals=False, stop=stop)
    _WORKER.training = True
    try:
        run(cfg, options, resume_dir=run_dir if resume else None)
        return "done", None
    except (Interrupted, KeyboardInterrupt):
        return "interrupted", None
    except Exception as err:
        traceback.print_exc()
        return "failed", "".join(traceback.format_exception_only(type(err), err)).strip()
    finally:
        _WORKER.training = False
        print(flush=True)


# ============================================================== executors

class _LocalExecutor:
    """A process pool ('spawn': torch and fork do not mix); one run per task."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self._start()

    def _start(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                        initializer=_init_local_worker, initargs=(os.getpid(),))
        self.broken = False

    def submit(self, task: dict[str, Any]):
        return self.pool.submit(run_task, task)

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


class _RayExecutor:
    """One Ray task per run (num_cpus=1). Ray re-executes a task whose worker or node died
    (max_retries); the re-executed task resumes from the run's checkpoint."""

    name = "ray"

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
        self.remote = ray.remote(num_cpus=1, max_retries=retries)(run_task)
        self.broken = False

    def submit(self, task: dict[str, Any]):
        return self.remote.remote(task)

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


# ============================================================== progress and summary

def _fmt_steps(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    return f"{n:,.0f}"


class GridProgress:
    """done / running / failed, aggregate steps/s and ETA: a live line on a terminal,
    a plain line every ``interval`` seconds elsewhere. Run events print as lines."""

    WINDOW = 120.0

    def __init__(self, grid: str, runs: list[GridRun], run_dirs: dict[str, Path], stream=None,
                 interval: float = 30.0):
        self.grid, self.run_dirs = grid, run_dirs
        self.total = {r.run_id: r.config.total_steps for r in runs}
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.interval = interval
        self.steps = {rid: 0 for rid in self.total}
        for rid in self.total:
            self.refresh(rid)
        self.start = time.monotonic()
        # (time, steps) samples: the rate is measured over the last WINDOW seconds, so start-up
        # (process spawn, imports) stops weighing on the ETA once the workers are busy.
        self._samples: collections.deque = collections.deque([(self.start, sum(self.steps.values()))])
        self.done = self.failed = 0
        self.running: set[str] = set()
        self._last_plain = time.monotonic()
        self._drawn = False
        self._printed = ""

    def refresh(self, rid: str) -> None:
        """Read the run's env_steps from its status.json (written after every update)."""
        try:
            status = json.loads((self.run_dirs[rid] / "status.json").read_text())
            self.steps[rid] = min(int(status.get("env_steps", 0)), self.total[rid])
        except (OSError, ValueError):
            pass

    def line(self) -> str:
        for rid in self.running:
            self.refresh(rid)
        now, steps = time.monotonic(), sum(self.steps.values())
        elapsed = now - self.start
        self._samples.append((now, steps))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.WINDOW:
            self._samples.popleft()
        t0, s0 = self._samples[0]
        sps = (steps - s0) / (now - t0) if now > t0 else 0.0
        left = sum(self.total.values()) - steps
        eta = left / sps if sps > 0 else float("nan")
        from trpo_bench.progress import fmt_duration

        return (f"[{self.grid}] {self.done}/{len(self.total)} done, {len(self.running)} running, {self.failed} failed"
                f" | {sps:,.0f} steps/s | {_fmt_steps(sum(self.steps.values()))}/{_fmt_steps(sum(self.total.values()))}"
                f" steps | elapsed {fmt_duration(elapsed)} | ETA {fmt_duration(eta) if left > 0 else '0:00'}")

    def tick(self) -> None:
        if self.live:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self._drawn = True
        elif time.monotonic() - self._last_plain >= self.interval:
            self._printed = self.line()
            self.stream.write(self._printed + "\n")
            self.stream.flush()
            self._last_plain = time.monotonic()

    def event(self, text: str) -> None:
        if self.live and self._drawn:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.live:
            self.tick()

    def finish(self) -> None:
        if self.live and self._drawn:
            self.stream.write("\r\033[K")
        line = self.line()
        if line != self._printed:  # a plain line may have just said the same
            self.stream.write(line + "\n")
        self.stream.flush()


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


def format_table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def fmt(row):
        return "  ".join(str(x).rjust(w) if i in right else str(x).ljust(w)
                         for i, (x, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


# ============================================================== the launcher

def _stored_config_problems(runs: list[GridRun], grid_dir: Path) -> list[str]:
    """Runs already in the store whose recorded config differs from the grid file's."""
    problems = []
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
        stored = {**json.loads(json.dumps(DEFAULTS.to_dict())), **saved}
        diff = [f"{k}: stored {stored.get(k)!r}, grid {v!r}" for k, v in want.items() if stored.get(k) != v]
        if diff:
            problems.append(f"{path}: the stored run differs from the grid file ({'; '.join(diff[:4])}"
                            f"{'; ...' if len(diff) > 4 else ''})")
    if problems:
        more = len(problems) - 10
        problems = problems[:10] + ([f"... and {more} more runs"] if more > 0 else [])
        problems.append("a grid's runs are found again by run id; give the changed grid a new 'name', "
                        "use another --out, or delete those run directories")
    return problems


def _resume_command() -> str:
    return " ".join(["trpo-bench"] + [shlex.quote(a) for a in sys.argv[1:]]) if sys.argv else "trpo-bench grid ..."


def _fmt_return(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.1f}"


def main(args) -> int:
    """``trpo-bench grid``: check, then train every run of a grid file (see docs/grids.md)."""
    problems = []
    if args.workers is not None and args.workers < 1:
        problems.append(f"--workers must be >= 1; got {args.workers}")
    if args.retries is not None and args.retries < 0:
        problems.append(f"--retries must be >= 0; got {args.retries}")
    if args.ray_address and args.backend != "ray":
        problems.append("--ray-address needs --backend ray")
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
    out = Path(args.out)
    grid_dir = out / grid.name
    stored = _stored_config_problems(runs, grid_dir)
    if stored:
        raise ConfigError(stored, str(args.file))

    run_dirs = {r.run_id: grid_dir / r.run_id for r in runs}
    locks = {r.run_id: FileLock(grid_dir / LOCK_DIR / f"{r.run_id}.lock") for r in runs}
    probe = {rid: lock.is_locked() for rid, lock in locks.items()}
    if any(probe.values()):  # a process killed a moment ago may still be releasing its locks
        probe = {rid: locked and locks[rid].is_locked(wait=2.0) for rid, locked in probe.items()}
    states = {rid: (LOCKED if probe[rid] else run_state(d)) for rid, d in run_dirs.items()}
    combos = len(grid.runs) // max(len(grid.seeds), 1)
    print(f"grid {grid.name} ({grid.source}): {len(grid.runs)} runs = {combos} combinations x "
          f"{len(grid.seeds)} seeds" + (f"; {len(runs)} selected by --only" if len(runs) != len(grid.runs) else "")
          + f" -> {grid_dir}/")
    if args.dry_run:
        print(format_table(["state", "run id", "directory"],
                           [[states[r.run_id], r.run_id, str(run_dirs[r.run_id])] for r in runs]))
        counts = {s: sum(1 for v in states.values() if v == s) for s in (NEW, DONE, RESUMABLE, RESTART, LOCKED)}
        print(", ".join(f"{n} {s}" for s, n in counts.items() if n)
              + "  (restart: started without a checkpoint, starts over; locked: another launch is training it)")
        return 0
    return _Launch(args, grid, runs, grid_dir, run_dirs, locks, states).run()


class _Launch:
    """One ``trpo-bench grid`` launch: schedule, retry, show progress, stop on a signal."""

    def __init__(self, args, grid: Grid, runs: list[GridRun], grid_dir: Path, run_dirs: dict[str, Path],
                 locks: dict[str, FileLock], states: dict[str, str]):
        self.args, self.grid, self.runs, self.grid_dir = args, grid, runs, grid_dir
        self.run_dirs, self.locks, self.states = run_dirs, locks, states
        self.outcome: dict[str, str] = {}  # run id -> final outcome of this launch
        self.errors: dict[str, str] = {}
        self.stopping = False
        self.aborted = False

    # ---------------------------------------------------------------- entry
    def run(self) -> int:
        self.grid_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.grid_dir / GRID_RECORD, self.grid.record())
        grid_lock = FileLock(self.grid_dir / GRID_LOCK)
        if not grid_lock.acquire(note=_resume_command()):
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
            if h == host and pid.isdigit() and not _alive(int(pid)):
                p.unlink(missing_ok=True)

    def _run(self, stop_path: Path) -> int:
        args = self.args
        order = self._execution_order()
        todo = [r for r in order if self.states[r.run_id] in (NEW, RESUMABLE, RESTART)]
        locked = [r for r in self.runs if self.states[r.run_id] == LOCKED]
        n = {s: sum(1 for v in self.states.values() if v == s) for s in (DONE, RESUMABLE, RESTART, NEW, LOCKED)}
        for r in locked:
            self.outcome[r.run_id] = "locked"
            self.errors[r.run_id] = f"locked by {self.locks[r.run_id].holder()}"
            print(f"skipping {r.run_id}: being trained by another launch ({self.locks[r.run_id].holder()})",
                  file=sys.stderr)
        workers = min(args.workers or os.cpu_count() or 1, max(len(todo), 1))
        plan = f"{n[DONE]} done (skipped), {n[RESUMABLE]} to resume, {n[NEW] + n[RESTART]} to start"
        if n[LOCKED]:
            plan += f", {n[LOCKED]} locked by another launch"
        if todo and args.backend == "local":
            plan += f"; {workers} worker processes"
        elif todo:
            plan += f"; Ray {'cluster at ' + args.ray_address if args.ray_address else 'started locally'}"
        print(plan, flush=True)
        interrupted = False
        if todo:
            interrupted = self._schedule(todo, workers, stop_path)
        return self._report(interrupted)

    def _execution_order(self) -> list[GridRun]:
        """Seed-major (every combination's first seed, then the second, ...): a partial grid
        already covers every combination, and long and short tasks mix on the workers."""
        seed_pos = {s: i for i, s in enumerate(self.grid.seeds)}
        combo_pos: dict[str, int] = {}
        for r in self.runs:
            combo_pos.setdefault(_key(r.axes), len(combo_pos))
        return sorted(self.runs, key=lambda r: (seed_pos.get(r.config.seed, 0), combo_pos[_key(r.axes)]))

    # ---------------------------------------------------------------- scheduling
    def _task(self, run: GridRun, stop_path: Path) -> dict[str, Any]:
        return {"run_id": run.run_id, "grid": self.grid.name, "config": run.config.to_dict(), "axes": run.axes,
                "out": str(Path(self.args.out).resolve()), "run_dir": str(self.run_dirs[run.run_id].resolve()),
                "lock_path": str(self.locks[run.run_id].path.resolve()), "stop_path": str(stop_path.resolve()),
                "wandb": self.args.wandb}

    def _schedule(self, todo: list[GridRun], workers: int, stop_path: Path) -> bool:
        args = self.args
        retries = args.retries if args.retries is not None else 1
        if args.backend == "ray":
            executor: Any = _RayExecutor(args.ray_address, args.workers, retries)
            capacity = executor.capacity
        else:
            executor, capacity = _LocalExecutor(workers), workers
        pending = list(todo)
        attempts = {r.run_id: 0 for r in todo}
        by_id = {r.run_id: r for r in todo}
        inflight: dict[Any, str] = {}
        progress = GridProgress(self.grid.name, todo, self.run_dirs)
        finished = 0
        old = self._install_signals(stop_path)
        try:
            while pending or inflight:
                while pending and len(inflight) < capacity and not self.stopping:
                    run = pending.pop(0)
                    attempts[run.run_id] += 1
                    inflight[executor.submit(self._task(run, stop_path))] = run.run_id
                    progress.running.add(run.run_id)
                if not inflight:
                    break
                for handle in executor.wait(list(inflight), timeout=0.5):
                    rid = inflight.pop(handle)
                    progress.running.discard(rid)
                    res = executor.result(handle)
                    outcome, error = res.get("outcome"), res.get("error")
                    progress.refresh(rid)
                    if outcome in ("failed", "crashed") and attempts[rid] <= retries and not self.stopping:
                        progress.event(f"failed   {rid}: {error}; log {self.run_dirs[rid] / LOG_FILE}; "
                                       f"retrying ({attempts[rid]}/{retries})")
                        pending.insert(0, by_id[rid])
                        continue
                    self.outcome[rid], self.errors[rid] = outcome, error or ""
                    if outcome in ("done", "already-done", "failed", "crashed", "locked"):
                        finished += 1
                    if outcome in ("done", "already-done"):
                        progress.done += 1
                        s = run_summary(self.run_dirs[rid])
                        progress.event(f"[{finished}/{len(todo)}] done     {rid}  return {_fmt_return(s['return'])}"
                                       + ("  (by another launch)" if outcome == "already-done" else ""))
                    elif outcome in ("failed", "crashed"):
                        progress.failed += 1
                        progress.event(f"[{finished}/{len(todo)}] FAILED   {rid}: {error}; "
                                       f"log {self.run_dirs[rid] / LOG_FILE}")
                    elif outcome == "locked":
                        progress.event(f"[{finished}/{len(todo)}] skipped  {rid}: {error}")
                    elif outcome == "interrupted":
                        progress.event(f"stopped  {rid} at {_fmt_steps(progress.steps[rid])} steps (checkpoint)")
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

    def _install_signals(self, stop_path: Path) -> dict | None:
        def on_signal(signum, frame):
            if self.stopping:  # second signal: abort without waiting for checkpoints
                raise KeyboardInterrupt
            self.stopping = True
            stop_path.parent.mkdir(parents=True, exist_ok=True)
            stop_path.touch()
            print(f"\n{signal.Signals(signum).name}: stopping; running runs checkpoint after their current update "
                  "(send it again to abort now)", file=sys.stderr, flush=True)

        return stop_signals.install(on_signal)

    # ---------------------------------------------------------------- the end
    def _report(self, interrupted: bool) -> int:
        rows, failed, locked, not_done = [], [], [], []
        for run in self.runs:
            rid = run.run_id
            s = run_summary(self.run_dirs[rid])
            state = s["state"]
            outcome = self.outcome.get(rid)
            if outcome == "locked":
                state = "locked"
                locked.append(rid)
            elif outcome in ("failed", "crashed") and state != "failed":
                state = "failed"
            if state == "failed":
                failed.append(rid)
            if state != "done":
                not_done.append(rid)
            rows.append([rid, state, f"{int(s['env_steps']):,}", _fmt_return(s["return"]),
                         _fmt_duration(s["wall"])])
        print()
        print(format_table(["run id", "state", "steps", "final return", "wall"], rows, right={2, 3, 4}))
        done = len(self.runs) - len(not_done)
        print(f"\n{done}/{len(self.runs)} runs done"
              + (f", {len(failed)} failed" if failed else "") + (f", {len(locked)} locked" if locked else "")
              + f"; run store {self.grid_dir}/")
        for rid in failed:
            print(f"  failed: {rid}: {self.errors.get(rid) or _status_error(self.run_dirs[rid])}\n"
                  f"          log: {self.run_dirs[rid] / LOG_FILE}")
        if interrupted:
            print(f"\ninterrupted: unfinished runs stopped at a checkpoint. Resume with the same command:\n"
                  f"  {_resume_command()}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if not self.args.no_analysis and done:
            self._analysis()
        if failed:
            print(f"\n{len(failed)} run(s) failed; rerun the same command to retry them "
                  "(they resume from their checkpoint)", file=sys.stderr)
            return EXIT_FAILED
        if locked:
            print(f"\n{len(locked)} run(s) were being trained by another launch; rerun when it has finished",
                  file=sys.stderr)
            return EXIT_LOCKED
        return 0

    def _analysis(self) -> None:
        """Figures and report of the grid; the analysis package is optional here."""
        try:
            from analysis.report import write_report_files
        except Exception as err:
            print(f"warning: no figures or report: the analysis package is unavailable "
                  f"({type(err).__name__}: {err})", file=sys.stderr)
            return
        out = self.grid_dir / "figures"
        try:
            *paths, report = write_report_files([self.grid_dir], out)  # statistics computed once
        except Exception as err:
            print(f"warning: analysis failed ({type(err).__name__}: {err}); the runs are intact, retry with "
                  f"trpo-bench plot {self.grid_dir}", file=sys.stderr)
            return
        print(f"figures: {len(list(paths or []))} files in {out}/; report: {report}")


def _fmt_duration(seconds: float) -> str:
    from trpo_bench.progress import fmt_duration

    return fmt_duration(seconds) if math.isfinite(seconds) else "-"


def _status_error(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "status.json").read_text()).get("error") or "?"
    except (OSError, ValueError):
        return "?"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
