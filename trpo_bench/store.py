"""The run store: one directory per run, every file written whole or not at all.

```
runs/<grid>/<run_id>/
  config.json     resolved config, seed, package versions, git commit
  metrics.csv     one row per policy update, appended and flushed as training goes
  status.json     state (running | done | failed | interrupted), env_steps reached, error text
  checkpoint.pt   latest checkpoint, replaced atomically
  eval.json       deterministic evaluation of the final policy (trpo-bench evaluate)
  wandb/          the W&B run's files
```
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from trpo_bench.config import RunConfig, stored_settings

# The contract lives in rundir; its names stay importable from here for the rest of the code.
from trpo_bench.rundir import (  # noqa: F401
    CHECKPOINT,
    CONFIG,
    EVAL,
    GRID,
    METRIC_COLUMNS,
    METRICS,
    NOT_NUMERIC,
    RECORD_FILES,
    STATUS,
    TIME_COLUMNS,
    atomic_write_bytes,
    atomic_write_text,
    is_run_dir,
    iter_run_dirs,
    read_json,
    read_metrics_rows,
    read_status,
    write_json,
)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ------------------------------------------------------------- config/status
    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.path / CONFIG, config)

    def read_config(self) -> dict[str, Any]:
        """config.json as written: settings, seed, versions, commit, grid and run id."""
        return read_json(self.path / CONFIG)

    def read_settings(self) -> dict[str, Any]:
        """The settings the run computes with: config.json's, where a setting added after
        the run started and whose default changed the computation takes its old value
        (``config.OLD_BEHAVIOUR``). Resuming, evaluating and the grid's check of stored
        runs all read a run's settings here."""
        return stored_settings(self.read_config().get("config", {}))

    def write_status(self, state: str, env_steps: int, total_steps: int, updates: int, error: str | None = None,
                     **extra: Any) -> None:
        write_json(self.path / STATUS, {
            "state": state, "env_steps": env_steps, "total_steps": total_steps, "updates": updates,
            "error": error, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra,
        })

    def read_status(self) -> dict[str, Any] | None:
        p = self.path / STATUS
        return read_json(p) if p.is_file() else None

    # ------------------------------------------------------------------- metrics
    def start_metrics(self) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(METRIC_COLUMNS)
        atomic_write_text(self.path / METRICS, buf.getvalue())

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one complete line in a single write, then flush and fsync."""
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_fmt(row.get(c)) for c in METRIC_COLUMNS])
        fd = os.open(self.path / METRICS, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, buf.getvalue().encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_metrics(self) -> list[dict[str, str]]:
        """Complete rows only (a line cut by a crash is ignored)."""
        return [r for r in read_metrics_rows(self.path) if len(r) == len(METRIC_COLUMNS)]

    def truncate_metrics(self, last_update: int) -> None:
        """Keep the rows of updates 1..last_update: the ones the checkpoint has seen."""
        rows = [r for r in self.read_metrics() if int(r["update"]) <= last_update]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(METRIC_COLUMNS)
        for r in rows:
            w.writerow([r[c] for c in METRIC_COLUMNS])
        atomic_write_text(self.path / METRICS, buf.getvalue())

    # ---------------------------------------------------------------- checkpoint
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        from trpo_bench import checkpoint

        atomic_write_bytes(self.path / CHECKPOINT, checkpoint.to_bytes(state))

    def load_checkpoint(self, trust: bool = False, rewrite: bool = True) -> dict[str, Any] | None:
        """The checkpoint, loaded safely (see ``trpo_bench.checkpoint``); None when there is none.
        With ``trust``, an old-format file is read once and, with ``rewrite``, saved in the current format."""
        from trpo_bench import checkpoint

        p = self.path / CHECKPOINT
        if not p.is_file():
            return None
        state, upgraded = checkpoint.load(p, trust=trust)
        if upgraded and rewrite:
            self.save_checkpoint(state)
        return state

    def resumable_checkpoint(self, trust: bool = False, rewrite: bool = True) -> dict[str, Any]:
        """The checkpoint to resume from, after checking that metrics.csv agrees with it;
        ConfigError naming what is wrong otherwise (no checkpoint, a damaged one, lost rows)."""
        from trpo_bench.config import ConfigError

        state = self.load_checkpoint(trust=trust, rewrite=rewrite)
        if state is None:
            raise ConfigError([f"{self.path}: no checkpoint.pt to resume from (the run stopped before its first "
                               "checkpoint); delete the directory and start the run again"])
        problems = self.check_metrics(state["update"])
        if problems:
            raise ConfigError([*problems, "the run store is damaged and its rows cannot be recovered; start the run "
                                          "again in a new directory"])
        return state

    # ------------------------------------------------------------------ integrity
    def check_records(self) -> list[str]:
        """Problems with config.json and status.json: each must be a readable JSON object
        (config.json with the run's id and settings)."""
        problems = []
        for name, needed in ((CONFIG, ("run_id", "config")), (STATUS, ("state",))):
            p = self.path / name
            try:
                record = json.loads(p.read_bytes().decode())
            except FileNotFoundError:
                problems.append(f"{p}: missing")
                continue
            except (OSError, UnicodeDecodeError, ValueError) as err:
                problems.append(f"{p}: not readable JSON ({type(err).__name__}: {str(err).splitlines()[0][:80]})")
                continue
            if not isinstance(record, dict):
                problems.append(f"{p}: expected a JSON object, found {type(record).__name__}")
            elif [k for k in needed if k not in record]:
                problems.append(f"{p}: no {', '.join(repr(k) for k in needed if k not in record)} field")
        return problems

    def check_metrics(self, updates: int, source: str = "the checkpoint") -> list[str]:
        """Problems with metrics.csv for a run that ``source`` (its checkpoint, or status.json)
        says has done ``updates`` updates: its rows must be updates 1, 2, ... with none missing,
        repeated or out of order, at least up to ``updates`` (later rows are cut on resume)."""
        p = self.path / METRICS
        if not p.is_file():
            return [f"{p}: missing"]
        try:
            rows = self.read_metrics()
        except (UnicodeDecodeError, csv.Error, KeyError) as err:
            return [f"{p}: unreadable ({type(err).__name__})"]
        try:
            values = [float(r["update"]) for r in rows]  # "3" as written; "3.0" from other writers
        except (KeyError, ValueError):
            return [f"{p}: a row has no valid 'update' value"]
        if not all(v.is_integer() for v in values):
            return [f"{p}: a row has no valid 'update' value"]
        seen = [int(v) for v in values]
        for i, u in enumerate(seen, start=1):
            if u != i:
                what = f"update {i} is missing" if u > i else f"update {u} appears again after update {i - 1}"
                return [f"{p}: {what} (row {i + 1} holds update {u})"]
        if len(seen) < updates:
            return [f"{p}: has {len(seen)} update rows, but {source} is at update {updates}"]
        return []


def export_runs(src: Path, dst: Path, done_only: bool = False) -> list[Path]:
    """Copy the compact part of a run store (grid.json, and each run's config.json,
    status.json, metrics.csv and eval.json; no checkpoints, no W&B files) from ``src`` to ``dst``,
    keeping the layout, so analysis reads the copy as it reads the original. ``done_only``:
    runs whose status says ``done``, no others."""
    src, dst = Path(src), Path(dst)
    written: list[Path] = []
    for grid_file in sorted(src.rglob(GRID)):
        target = dst / grid_file.relative_to(src)
        atomic_write_bytes(target, grid_file.read_bytes())
        written.append(target)
    for run in iter_run_dirs(src):
        if done_only and (read_status(run) or {}).get("state") != "done":
            continue
        rel = run.relative_to(src) if run != src else Path(run.name)
        for name in RECORD_FILES:
            if (run / name).is_file():
                target = dst / rel / name
                atomic_write_bytes(target, (run / name).read_bytes())
                written.append(target)
    return written


NOT_IN_RUN_ID = {"algo", "env_id", "seed", *NOT_NUMERIC}


def make_run_id(cfg: RunConfig, keys: list[str] | None = None) -> str:
    """``algo-env-[key=value ...]-s<seed>``; ``keys`` defaults to the settings that differ
    from the defaults, so a relaunch of the same command finds its run again."""
    if keys is None:
        base = RunConfig()
        keys = [k for k, v in cfg.to_dict().items() if k not in NOT_IN_RUN_ID and v != base.to_dict()[k]]
    parts = [cfg.algo, cfg.env_id]
    for k in keys:
        if k in ("algo", "env_id", "seed"):
            continue
        v = getattr(cfg, k)
        v = "x".join(map(str, v)) if isinstance(v, tuple) else v
        parts.append(f"{k}={v}")
    parts.append(f"s{cfg.seed}")
    return safe_name("-".join(str(p) for p in parts))
