"""Runs shared between grids: a run with the same settings and seed is trained once.

A grid run that ends ``done`` is entered in ``<out>/.shared/<key>.json``; the key hashes what
decides its numbers: its settings (less those that change none, :data:`NO_EFFECT`) and the
versions that computed it (code, libraries, CPU kind; ``train.versions``). A new run of any
grid in the same store with the same key is not trained: the finished run's files are copied
into its directory (its lock held), and its config.json and status.json name the source
(``shared_from``). Ablations that each contain the default settings then compute the default
runs once, when their grids are launched one after another (a twin still training in another
launch is not waited for: both train, with the same bits).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from trpo_bench.rundir import CHECKPOINT, CONFIG, EVAL, METRICS, STATUS, atomic_write_bytes, write_json

SHARED_DIR = ".shared"
# Settings that change no number a run stores: physics threads (tests/test_mujoco_batch.py) and
# how often it checkpoints (a resumed run equals the uninterrupted one).
NO_EFFECT = frozenset({"env_threads", "checkpoint_every"})
# What a shared run copies: its record, not its log or W&B files.
COPIED = (METRICS, EVAL, CHECKPOINT)


def share_key(settings: dict[str, Any], versions: dict[str, str]) -> str:
    """The hash of a run's settings (all but :data:`NO_EFFECT`) and of ``versions`` (W&B's left out)."""
    what = {"settings": {k: v for k, v in settings.items() if k not in NO_EFFECT},
            "versions": {k: v for k, v in versions.items() if k != "wandb"}}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=list).encode()).hexdigest()[:32]


def record(out: Path, key: str, run_dir: Path) -> None:
    """Enter a finished run under ``key`` (the first one entered stays the source)."""
    entry = Path(out) / SHARED_DIR / f"{key}.json"
    if not entry.exists():
        write_json(entry, {"run": str(Path(run_dir).resolve().relative_to(Path(out).resolve()))})


def find(out: Path, key: str, settings: dict[str, Any], exclude: Path) -> Path | None:
    """The finished run entered under ``key`` whose stored settings are ``settings``; None if
    there is none (or the entry's run is gone, unfinished, or is ``exclude`` itself)."""
    entry = Path(out) / SHARED_DIR / f"{key}.json"
    try:
        src = Path(out) / json.loads(entry.read_text())["run"]
        status = json.loads((src / STATUS).read_text())
        stored = json.loads((src / CONFIG).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if src.resolve() == Path(exclude).resolve() or status.get("state") != "done":
        return None
    if any(stored.get(k) != v for k, v in _comparable(settings).items()):
        return None
    return src


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as config.json stores them (tuples as lists), :data:`NO_EFFECT` left out."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items() if k not in NO_EFFECT}


def copy_run(src: Path, dst: Path, meta: dict[str, Any], out: Path) -> None:
    """Copy the finished run ``src`` into ``dst`` as a run of another grid: ``meta`` replaces
    config.json's grid, run id and axes; both records name ``src`` as ``shared_from``. The
    status is written last, so an interrupted copy is not a finished run."""
    source = str(Path(src).resolve().relative_to(Path(out).resolve()))
    dst.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (src / name).is_file():
            atomic_write_bytes(dst / name, (src / name).read_bytes())
    config = json.loads((src / CONFIG).read_text())
    write_json(dst / CONFIG, config | meta | {"shared_from": source})
    status = json.loads((src / STATUS).read_text())
    write_json(dst / STATUS, status | {"shared_from": source})
