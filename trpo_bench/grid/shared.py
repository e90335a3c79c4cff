"""Runs shared between grids: a run with the same settings and seed is trained once.

A grid run that ends ``done`` is entered in ``<out>/.shared/<key>.json``; the key hashes what
decides its numbers: its settings (less those that change none of its learning, :data:`NO_EFFECT`)
and the versions that computed it, as its config.json records them (trpo-bench, libraries,
CPU kind). A new run of any grid in the same store with the same key is not trained: the
finished run's files are copied into its directory (both runs' locks held), and its
config.json and status.json name the source (``shared_from``). Ablations that each contain the
default settings then compute the default runs once, when their grids are launched one after
another (a twin still training in another launch is not waited for: both train, with the
same bits).

The key names the trpo-bench version, not the commit: the project changes a computation only
behind a new setting whose old value stands for the old behaviour (``config.OLD_BEHAVIOUR``),
or with a new version, so a change in the numbers changes the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from trpo_bench.config import complete_settings
from trpo_bench.locks import FileLock
from trpo_bench.rundir import CHECKPOINT, CONFIG, EVAL, METRICS, STATUS, atomic_write_bytes, write_json

SHARED_DIR = ".shared"
LOCK_DIR = ".locks"  # as grid.state: <grid>/.locks/<run_id>.lock
# Settings that change none of a run's learning: physics threads (tests/test_mujoco_batch.py)
# and how often it checkpoints (a resumed run equals the uninterrupted one). They change its
# time/* columns, which a copy carries from its source.
NO_EFFECT = frozenset({"env_threads", "checkpoint_every"})
# What a shared run copies: its record, not its log or W&B files.
COPIED = (METRICS, EVAL, CHECKPOINT)


def share_key(settings: dict[str, Any], versions: dict[str, str]) -> str:
    """The hash of a run's settings (all but :data:`NO_EFFECT`) and of ``versions`` (W&B's left out)."""
    what = {"settings": _comparable(settings), "versions": {k: v for k, v in versions.items() if k != "wandb"}}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=list).encode()).hexdigest()[:32]


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Every setting as config.json stores values (tuples as lists), a setting added after the
    file was written at the value it stands for (``config.complete_settings``), :data:`NO_EFFECT`
    left out."""
    return {k: v for k, v in complete_settings(settings).items() if k not in NO_EFFECT}


def reindex(out: Path) -> None:
    """Enter every finished, trained (not copied) run of the store ``out`` that has no valid
    entry under its key, as :func:`record` does when a run finishes. Keys change when a setting
    is added (entries written before were keyed without it); a launch calls this first."""
    for status_path in sorted(Path(out).glob(f"*/*/{STATUS}")):
        try:
            status = json.loads(status_path.read_text())
        except (OSError, ValueError):
            continue
        if status.get("state") == "done" and "shared_from" not in status:
            record(out, status_path.parent)


def relative(path: Path, out: Path) -> str:
    """``path`` relative to the store (through ``..`` when a grid directory lives elsewhere)."""
    return Path(os.path.relpath(path, out)).as_posix()


def _entry(out: Path, key: str) -> Path:
    return Path(out) / SHARED_DIR / f"{key}.json"


def record(out: Path, run_dir: Path) -> str | None:
    """Enter the finished run ``run_dir`` (a directory of ``out``) under the key of its stored
    settings and versions; an entry whose run is gone or changed is replaced. Returns the key,
    or None when the run cannot be entered (no readable config.json)."""
    try:
        config = json.loads((Path(run_dir) / CONFIG).read_text())
        key = share_key(config["config"], config.get("versions", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if find(out, key, config["config"], exclude=run_dir) is None:
        write_json(_entry(out, key), {"run": relative(run_dir, out)})
    return key


def find(out: Path, key: str, settings: dict[str, Any], exclude: Path) -> Path | None:
    """The finished run entered under ``key`` whose stored settings are ``settings`` (less
    :data:`NO_EFFECT`); None if there is none (or the entry's run is gone, unfinished, changed,
    or is ``exclude`` itself)."""
    try:
        src = Path(out) / json.loads(_entry(out, key).read_text())["run"]
        status = json.loads((src / STATUS).read_text())
        stored = json.loads((src / CONFIG).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if src == Path(exclude) or status.get("state") != "done" or "shared_from" in status:
        return None
    if _comparable(stored) != _comparable(settings):
        return None
    return src


def copy_run(src: Path, dst: Path, settings: dict[str, Any], meta: dict[str, Any], out: Path) -> bool:
    """Copy the finished run ``src`` into ``dst`` as a run of another grid, holding ``src``'s
    lock so that nothing extends it meanwhile; False (nothing copied) when another process
    holds it, or when ``src`` is no longer the finished twin. config.json keeps ``src``'s
    record with ``meta`` (grid, run id, axes, W&B id and group) and the copying grid's own
    ``settings``; both records name ``src`` as ``shared_from``. The status is written last,
    so an interrupted copy is not a finished run."""
    lock = FileLock(src.parent / LOCK_DIR / f"{src.name}.lock")
    if not lock.acquire(wait=0.0, note=f"copied to {relative(dst, out)}"):
        return False
    try:
        if find(out, share_key(settings, json.loads((src / CONFIG).read_text()).get("versions", {})),
                settings, exclude=dst) != src:
            return False
        source = relative(src, out)
        dst.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            if (src / name).is_file():
                atomic_write_bytes(dst / name, (src / name).read_bytes())
        config = json.loads((src / CONFIG).read_text())
        config = {k: v for k, v in config.items() if k != "extended"}  # the source's history, not this run's
        write_json(dst / CONFIG, config | meta | {"config": settings, "shared_from": source})
        status = json.loads((src / STATUS).read_text())
        write_json(dst / STATUS, status | {"shared_from": source})
        return True
    finally:
        lock.release()
