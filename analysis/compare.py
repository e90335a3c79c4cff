"""Several sources in one comparison: run stores, W&B projects, and external baselines.

A source is a run-store path or ``wandb:ENTITY/PROJECT[/GROUP]`` (mirrored through
``load.fetch_wandb`` and its cache). With more than one source, or a baseline, the runs of
every task that at least two sources share also form one extra grid, ``comparison``, whose
methods are told apart by their source as well as by their settings, so nothing from two
stores is pooled.

External baseline CSV (for example exported from another library, or a W&B project): one
row per logged point, columns

    method     name of the method ("sb3-trpo"); drawn and labelled "[external: FILE]"
    task       gymnasium id ("Hopper-v5"), matched against the runs' env_id
    seed       run within (method, task)
    env_steps  environment steps at that point
    return     training episode return at that point (our rollout/ep_return_mean)

Its final score is computed as ours: the mean over the last 10% of a run's points.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import load
from analysis.load import RunStore, load_store
from analysis.summary import RETURN

COMPARISON = "comparison"
WANDB_PREFIX = "wandb:"
BASELINE_COLUMNS = ("method", "task", "seed", "env_steps", "return")


class SourceError(ValueError):
    """A source or baseline file the user named cannot be read; the message says which and why."""


def is_wandb(source: str | Path) -> bool:
    return str(source).startswith(WANDB_PREFIX)


def parse_wandb(source: str) -> tuple[str, str | None]:
    """'wandb:ENTITY/PROJECT[/GROUP]' -> ('ENTITY/PROJECT', GROUP or None)."""
    parts = str(source)[len(WANDB_PREFIX):].strip("/").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise SourceError(f"{source}: expected wandb:ENTITY/PROJECT or wandb:ENTITY/PROJECT/GROUP")
    return "/".join(parts[:2]), (parts[2] if len(parts) == 3 else None)


def source_label(source: str | Path) -> str:
    """A short name for a source: the directory's name, or 'wandb:ENTITY/PROJECT[/GROUP]'."""
    if is_wandb(source):
        return str(source)
    path = Path(source)
    return path.resolve().name or str(path)


def load_source(source: str | Path, *, api: Any = None, cache_dir: Path | None = None) -> RunStore:
    """One source as a RunStore; W&B sources are mirrored (or read from the cache) first."""
    if is_wandb(source):
        project, group = parse_wandb(str(source))
        try:
            root = load.fetch_wandb(project, filters={"group": group} if group else None, api=api,
                                    cache_dir=cache_dir)
        except Exception as err:  # no network, no API key, no such project: the user's to fix
            raise SourceError(f"{source}: could not read the runs from W&B ({type(err).__name__}: {err}); "
                              "check the name and `wandb login`") from None
        return load_store(root)
    if not Path(source).exists():
        raise SourceError(f"no such directory: {source}")
    return load_store(Path(source))


def read_baseline(path: Path) -> RunStore:
    """An external baseline CSV (module docstring) as a RunStore of finished runs, state done."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: not a CSV file ({err}); expected columns {', '.join(BASELINE_COLUMNS)}") from None
    missing = [c for c in BASELINE_COLUMNS if c not in frame.columns]
    if missing:
        raise SourceError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; a baseline "
                          f"needs {', '.join(BASELINE_COLUMNS)} (one row per logged point)")
    for column in ("seed", "env_steps", "return"):
        bad = pd.to_numeric(frame[column], errors="coerce").isna() & frame[column].notna()
        if bad.any():
            row = bad.idxmax()
            raise SourceError(f"{path}: column {column}, row {int(row) + 2}: {frame.loc[row, column]!r} "
                              "is not a number")
    label = f"external: {path.name}"
    frame = frame.assign(env_steps=pd.to_numeric(frame["env_steps"]), seed=pd.to_numeric(frame["seed"]).astype(int),
                         **{RETURN: pd.to_numeric(frame["return"])})
    rows, metrics = [], []
    for (method, task, seed), g in frame.groupby(["method", "task", "seed"], sort=True):
        g = g.sort_values("env_steps", kind="stable")
        run_id = f"{method}-{task}-s{seed}"
        total = float(g["env_steps"].max())
        rows.append({"run_id": run_id, "grid": label, "algo": str(method), "env_id": str(task), "seed": int(seed),
                     "state": "done", "total_steps": total, "env_steps": total, "updates": len(g), "error": None,
                     "has_metrics": True, "finished": True, "run_dir": str(path), "eval_return": math.nan,
                     "eval_json_episodes": None, "eval_reward_terms": (), "_axes": ()})
        metrics.append(pd.DataFrame({"run_id": run_id, "grid": label, "algo": str(method), "env_id": str(task),
                                     "seed": int(seed), "state": "done", "total_steps": total,
                                     "env_steps": g["env_steps"].to_numpy(float),
                                     "update": range(1, len(g) + 1), RETURN: g[RETURN].to_numpy(float)}))
    if not rows:
        raise SourceError(f"{path}: no rows")
    return RunStore(metrics=pd.concat(metrics, ignore_index=True), runs=pd.DataFrame(rows), grids={}, axes=())


def combine(sources: Sequence[tuple[str, RunStore]], baselines: Sequence[RunStore] = ()) -> RunStore:
    """Every source's grids as they are, plus the ``comparison`` grid when there are two sources
    or more (a baseline counts as one): the runs of every task that two sources share, each
    run's source in the "store" column, which tells methods apart."""
    parts = [(label, s) for label, s in sources if not s.runs.empty]
    parts += [(str(b.runs["grid"].iloc[0]), b) for b in baselines]
    own = [_renamed(label, s, parts) for label, s in parts[: len(parts) - len(baselines)]]
    grids = {k: v for s in own for k, v in s.grids.items()}
    runs = [s.runs for s in own]
    metrics = [s.metrics for s in own]
    axes = sorted({a for s in own for a in s.axes})
    if len(parts) >= 2:
        tagged = [(label, s.runs.assign(store=label), s.metrics.assign(store=label)) for label, s in parts]
        tasks = pd.concat([r[["env_id", "store"]] for _, r, _ in tagged]).drop_duplicates()["env_id"].value_counts()
        shared = set(tasks[tasks >= 2].index)
        for label, r, m in tagged:
            external = label.startswith("external: ")
            runs.append(r[r["env_id"].isin(shared)].assign(grid=COMPARISON, external=external))
            metrics.append(m[m["env_id"].isin(shared)].assign(grid=COMPARISON) if len(m) else m)
        axes = sorted({*axes, "store"})
    runs_frame = pd.concat([r for r in runs if len(r)], ignore_index=True) if runs else pd.DataFrame()
    metrics_frame = pd.concat([m for m in metrics if len(m)], ignore_index=True) if metrics else pd.DataFrame()
    if "external" in runs_frame:
        runs_frame["external"] = runs_frame["external"].fillna(False).astype(bool)
    return RunStore(metrics=metrics_frame, runs=runs_frame, grids=grids, axes=tuple(axes))


def _renamed(label: str, store: RunStore, parts: Sequence[tuple[str, RunStore]]) -> RunStore:
    """``store`` with each grid that another source also has renamed '<grid> [<label>]', so two
    stores' runs of one grid name are never read as one grid."""
    names = [g for _, s in parts for g in s.grid_names]
    clash = {g for g in store.grid_names if names.count(g) > 1}
    if not clash:
        return store
    rename = {g: f"{g} [{label}]" for g in clash}
    return RunStore(metrics=store.metrics.assign(grid=store.metrics["grid"].replace(rename)),
                    runs=store.runs.assign(grid=store.runs["grid"].replace(rename)),
                    grids={rename.get(k, k): v for k, v in store.grids.items()}, axes=store.axes)


def load_all(sources: Sequence[str | Path], baselines: Sequence[Path] = (), *, api: Any = None,
             cache_dir: Path | None = None) -> RunStore:
    """``combine`` of every source (paths or wandb: specs) and baseline file."""
    labels = _unique([source_label(s) for s in sources])
    stores = [(label, load_source(s, api=api, cache_dir=cache_dir)) for label, s in zip(labels, sources)]
    return combine(stores, [read_baseline(Path(b)) for b in baselines])


def run(command: str, sources: Sequence[str | Path], out: Path | None = None, baselines: Sequence[Path] = (),
        **kwargs: Any) -> list[Path]:
    """``plot`` or ``report`` of ``sources`` (and ``baselines``) into ``out`` (default: ``default_out``
    of the first source): every source is read before anything is written. Returns the paths
    written, report.md last for ``report``."""
    from analysis import plots, report

    store = load_all(sources, baselines)
    out = Path(out) if out is not None else default_out(sources[0])
    names = [str(s) for s in sources] + [str(b) for b in baselines]
    if command == "plot":
        return plots.make_all(names, out, store=store, **kwargs)
    return report.write_report_files(names, out, store=store, **kwargs)


def default_out(source: str | Path) -> Path:
    """<RUNS_DIR>/figures, or figures/wandb_<entity>_<project>[_<group>] for a W&B source."""
    if is_wandb(source):
        return Path("figures") / re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(source)).strip("_")
    return Path(source) / "figures"


def _unique(labels: Sequence[str]) -> list[str]:
    """Labels made distinct: a second 'runs' becomes 'runs (2)'."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out
