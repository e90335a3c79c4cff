"""Read run stores, or W&B runs, into tidy DataFrames.

Run-store layout (docs: DESIGN.md "Run store")::

    <grid>/grid.json                  optional: name, source, axes, seeds, runs
    <grid>/<run_id>/config.json       run_id, grid, algo, env_id, seed, total_steps, axes, config
    <grid>/<run_id>/metrics.csv       one row per policy update (absent before the first)
    <grid>/<run_id>/status.json       state, env_steps, total_steps, updates, error

A path given to the loaders may be a run directory, a grid directory or a parent
of grid directories. W&B runs are mirrored into the same layout under a cache
directory (``fetch_wandb``), so everything downstream reads one format.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trpo_bench.config import complete_settings
from trpo_bench.rundir import (
    CONFIG,
    EVAL,
    GRID,
    METRIC_COLUMNS,
    METRICS,
    STATUS,
    atomic_write_text,
    complete_csv_text,
    iter_run_dirs,
    read_json_or_none,
)

META_COLUMNS = ("run_id", "grid", "algo", "env_id", "seed", "state", "total_steps")
RUN_STATUS_COLUMNS = ("env_steps", "updates", "error", "has_metrics", "finished", "run_dir", "eval_return",
                      "eval_json_episodes", "eval_reward_terms")
UNGROUPED = "ungrouped"


def is_metric(column: str) -> bool:
    """Metric columns are the DESIGN.md names; all of them but two contain '/'."""
    return column in METRIC_COLUMNS or "/" in column


@dataclass(frozen=True)
class RunStore:
    """Everything read from one or more run-store paths.

    metrics: one row per run x update; META_COLUMNS, the run's settings (its flat
        ``config`` plus its grid ``axes``), then the metric columns.
    runs: one row per run, including runs with no metrics.csv; META_COLUMNS,
        settings and RUN_STATUS_COLUMNS. ``finished`` is state == "done" and
        env_steps >= total_steps. ``eval_return`` is the deterministic return of the
        final policy from eval.json (``trpo-bench evaluate``), NaN without one, over
        ``eval_json_episodes`` episodes (the setting ``eval_episodes`` is the periodic
        evaluation's); ``eval_reward_terms`` holds that evaluation's reward terms, each summed
        over an episode and averaged over the episodes, as sorted (name, value) pairs (empty
        where the task reports none or the run has no eval.json).
    grids: grid name -> grid.json contents, for grids that have one.
    axes: the grid axes declared by the runs, other than algo and env_id.

    run_id is unique within a grid, not across grids: per-run statistics go
    through ``select_grid`` (as plots and report do).
    """

    metrics: pd.DataFrame
    runs: pd.DataFrame
    grids: Mapping[str, dict] = field(default_factory=dict)
    axes: tuple[str, ...] = ()

    def select_grid(self, grid: str) -> RunStore:
        """The part of the store that belongs to one grid."""
        return RunStore(
            metrics=self.metrics[self.metrics["grid"] == grid].reset_index(drop=True),
            runs=self.runs[self.runs["grid"] == grid].reset_index(drop=True),
            grids={k: v for k, v in self.grids.items() if k == grid},
            axes=tuple(a for a in self.axes if a in _declared_axes(self.runs, grid)),
        )

    @property
    def grid_names(self) -> list[str]:
        return sorted(self.runs["grid"].unique().tolist())


def _declared_axes(runs: pd.DataFrame, grid: str) -> set[str]:
    sub = runs[runs["grid"] == grid]
    return set().union(*sub["_axes"]) if len(sub) else set()


# ---------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------


def find_run_dirs(path: Path) -> list[Path]:
    """Run directories at or below ``path``, sorted, including those whose status.json was
    never written (``trpo_bench.rundir.is_run_dir`` with ``partial``)."""
    return list(iter_run_dirs(Path(path), partial=True))


def find_grids(paths: Iterable[Path]) -> dict[str, dict]:
    """grid.json contents by grid name, for grid dirs at, above or below ``paths``."""
    grids: dict[str, dict] = {}
    for p in paths:
        p = Path(p)
        candidates = [p / GRID, p.parent / GRID]
        candidates += [c / GRID for c in sorted(p.iterdir())] if p.is_dir() else []
        for c in candidates:
            spec = read_json_or_none(c) if c.is_file() else None
            if spec is not None:
                grids[str(spec.get("name") or c.parent.name)] = spec
    return grids


# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def setting_value(value: Any) -> Any:
    """A scalar as it is; a list of scalars (``hidden_sizes``) as "64x64", as run ids write it."""
    if isinstance(value, (list, tuple)) and all(_scalar(v) for v in value):
        return "x".join(map(str, value))
    return value


def _settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run's flat settings: config["config"] overlaid by its axes; scalars and lists of them.
    A setting added after the run was stored takes the value it stands for
    (``config.complete_settings``), so runs before and after it are one method."""
    stored = config.get("config")
    flat = {k: setting_value(v) for k, v in (complete_settings(stored) if stored else {}).items()}
    flat.update({k: setting_value(v) for k, v in (config.get("axes") or {}).items()})
    reserved = set(META_COLUMNS) | set(RUN_STATUS_COLUMNS)
    return {k: v for k, v in flat.items() if _scalar(v) and k not in reserved and not is_metric(k)}


def metrics_frame(path: Path) -> pd.DataFrame | None:
    """metrics.csv as floats, or None when it is absent or has no header (a last line
    without its newline is dropped, as ``trpo_bench.rundir.complete_csv_text`` says)."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(io.StringIO(complete_csv_text(path.read_text())))
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    return frame.apply(pd.to_numeric, errors="coerce")


def read_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """One run directory -> (its row of the runs table, its metrics or None)."""
    run_dir = Path(run_dir)
    config = read_json_or_none(run_dir / CONFIG) or {}
    status = read_json_or_none(run_dir / STATUS) or {}
    evaluation = read_json_or_none(run_dir / EVAL) or {}
    metrics = metrics_frame(run_dir / METRICS)
    total = config.get("total_steps", status.get("total_steps"))
    steps_logged = (
        float(np.nanmax(metrics["env_steps"]))
        if metrics is not None and "env_steps" in metrics and metrics["env_steps"].notna().any()
        else 0.0
    )
    env_steps = status.get("env_steps")
    env_steps = steps_logged if env_steps is None else env_steps
    state = status.get("state") or "unknown"
    if evaluation.get("update") not in (None, status.get("updates")):
        evaluation = {}  # evaluated before the run was extended: not its final policy
    row = {
        "run_id": str(config.get("run_id") or run_dir.name),
        "grid": str(config.get("grid") or _grid_from_dir(run_dir)),
        "algo": config.get("algo"),
        "env_id": config.get("env_id"),
        "seed": config.get("seed"),
        "state": state,
        "total_steps": total,
        **_settings(config),
        "env_steps": env_steps,
        "updates": status.get("updates", 0 if metrics is None else len(metrics)),
        "error": status.get("error"),
        "has_metrics": metrics is not None and len(metrics) > 0,
        "finished": state == "done" and total is not None and env_steps >= total,
        "run_dir": str(run_dir),
        "eval_return": float(evaluation.get("return_mean", math.nan)),
        "eval_json_episodes": evaluation.get("episodes"),
        "eval_reward_terms": tuple(sorted((evaluation.get("reward_terms") or {}).items())),
        "_axes": tuple(a for a in (config.get("axes") or {}) if a not in ("algo", "env_id")),
    }
    return row, metrics


def _grid_from_dir(run_dir: Path) -> str:
    spec = read_json_or_none(run_dir.parent / GRID)
    return str(spec.get("name")) if spec and spec.get("name") else UNGROUPED


# ---------------------------------------------------------------------------
# Many runs
# ---------------------------------------------------------------------------


def load_store(paths: Path | Iterable[Path]) -> RunStore:
    """Read every run at or below ``paths`` into a RunStore."""
    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    run_dirs = sorted({d.resolve() for p in paths for d in find_run_dirs(p)})
    rows, frames = [], []
    for run_dir in run_dirs:
        row, metrics = read_run(run_dir)
        rows.append(row)
        if metrics is not None and len(metrics):
            frames.append(_with_meta(metrics, row))
    runs = pd.DataFrame(rows)
    if runs.empty:
        runs = pd.DataFrame(columns=[*META_COLUMNS, *RUN_STATUS_COLUMNS, "_axes"])
    axes = sorted(set().union(*runs["_axes"])) if len(runs) else []
    settings = [c for c in runs.columns if c not in META_COLUMNS + RUN_STATUS_COLUMNS + ("_axes",)]
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    ordered = [*META_COLUMNS, *settings]
    metric_cols = [c for c in METRIC_COLUMNS if c in metrics.columns]
    metric_cols += sorted(c for c in metrics.columns if c not in ordered and c not in metric_cols)
    metrics = metrics.reindex(columns=[*ordered, *metric_cols])
    if "env_steps" not in metrics.columns:
        metrics["env_steps"] = pd.Series(dtype=float)
    return RunStore(metrics=metrics, runs=runs, grids=find_grids(paths), axes=tuple(axes))


def _with_meta(metrics: pd.DataFrame, row: Mapping[str, Any]) -> pd.DataFrame:
    meta = {k: v for k, v in row.items() if k not in RUN_STATUS_COLUMNS and k != "_axes"}
    head = pd.DataFrame({k: [v] * len(metrics) for k, v in meta.items()}, index=metrics.index)
    return pd.concat([head, metrics], axis=1)


def load_runs(paths: Path | Iterable[Path]) -> pd.DataFrame:
    """One tidy DataFrame, a row per run x update, from one or several run stores."""
    return load_store(paths).metrics


# ---------------------------------------------------------------------------
# W&B
# ---------------------------------------------------------------------------

DEFAULT_WANDB_CACHE = Path(
    os.environ.get("TRPO_BENCH_WANDB_CACHE", Path.home() / ".cache" / "trpo-bench" / "wandb")
)
_WANDB_STATE = {"finished": "done", "running": "running", "crashed": "failed", "failed": "failed", "killed": "failed"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "_"


def _cache_root(path: str, filters: Mapping | None, cache_dir: Path) -> Path:
    key = hashlib.sha1(json.dumps(filters or {}, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Path(cache_dir) / _slug(path) / f"filters-{key}"


def _default_api():
    import wandb  # imported lazily: only needed when the cache is cold

    return wandb.Api()


def fetch_wandb(
    path: str,
    *,
    filters: Mapping[str, Any] | None = None,
    api: Any = None,
    cache_dir: Path | None = None,
    refresh: bool = False,
) -> Path:
    """Mirror the W&B runs of ``path`` ("entity/project") into a local run store.

    Histories come from ``Run.scan_history()``, every logged row; ``Run.history()``
    returns a sample of 500 rows. The mirror lives under ``cache_dir`` keyed by
    path and filters. When it exists and ``refresh`` is False, the API is not
    touched. With ``refresh``, runs are listed again and only those new or not
    finished at the last fetch are scanned. ``api`` defaults to ``wandb.Api()``.
    Returns the mirror's root, a parent of grid directories.
    """
    root = _cache_root(path, filters, cache_dir or DEFAULT_WANDB_CACHE)
    index_path = root / "index.json"
    index = read_json_or_none(index_path) if index_path.is_file() else None
    if index is not None and not refresh:
        return root
    api = _default_api() if api is None else api
    known = {e["wandb_id"]: e for e in (index or {}).get("runs", [])}
    entries = []
    for run in api.runs(path, filters=dict(filters) if filters else None):
        old = known.get(run.id)
        if old is not None and old["state"] == "done" and (root / old["dir"]).is_dir():
            entries.append(old)
            continue
        entries.append(_mirror_run(run, root))
    atomic_write_text(index_path,
                      json.dumps({"path": path, "filters": filters, "runs": entries}, indent=1, default=str))
    return root


def _mirror_run(run: Any, root: Path) -> dict[str, Any]:
    """Write one W&B run as <root>/<grid>/<run_id>/{config,status}.json, metrics.csv."""
    # trpo_bench's logger sends the flat settings plus run_id, grid and
    # "axis/<name>" keys; a config.json-shaped record (nested "config") works too.
    raw = dict(run.config or {})
    settings = dict(raw["config"]) if isinstance(raw.get("config"), Mapping) else dict(raw)
    get = lambda key, default=None: raw.get(key, settings.get(key, default))  # noqa: E731
    run_id = str(get("run_id") or run.name or run.id)
    grid = str(get("grid") or getattr(run, "group", None) or "wandb")
    axes = raw.get("axes") or {k.removeprefix("axis/"): v for k, v in raw.items() if k.startswith("axis/")}
    axes = axes or {"algo": get("algo"), "env_id": get("env_id")}
    config = {
        "run_id": run_id,
        "grid": grid,
        "algo": get("algo"),
        "env_id": get("env_id"),
        "seed": get("seed"),
        "total_steps": get("total_steps"),
        "axes": axes,
        "config": {k: v for k, v in settings.items() if _scalar(v) and not k.startswith("axis/")},
        "wandb": {"id": run.id, "name": getattr(run, "name", None), "state": getattr(run, "state", None)},
    }
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in run.scan_history()]
    history = pd.DataFrame(rows)
    cols = [c for c in METRIC_COLUMNS if c in history.columns]
    history = history.reindex(columns=cols + sorted(set(history.columns) - set(cols)))
    if "env_steps" in history.columns:
        history = history.sort_values("env_steps", kind="stable")
    state = _WANDB_STATE.get(getattr(run, "state", ""), "running")
    steps = history["env_steps"] if "env_steps" in history else pd.Series(dtype=float)
    env_steps = int(np.nanmax(steps)) if steps.notna().any() else 0
    status = {"state": state, "env_steps": env_steps, "total_steps": config["total_steps"],
              "updates": len(history), "error": None}
    run_dir = root / _slug(grid) / _slug(run_id if run_id else run.id)
    atomic_write_text(run_dir / CONFIG, json.dumps(config, indent=1, default=str))
    atomic_write_text(run_dir / STATUS, json.dumps(status, indent=1))
    if len(history):
        atomic_write_text(run_dir / METRICS, history.to_csv(index=False))
    return {"wandb_id": run.id, "run_id": run_id, "dir": str(run_dir.relative_to(root)), "state": state}


def load_wandb(path: str, **kwargs: Any) -> pd.DataFrame:
    """Tidy DataFrame of W&B runs; see ``fetch_wandb`` for caching and arguments."""
    return load_runs(fetch_wandb(path, **kwargs))
