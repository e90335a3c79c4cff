"""The run-store contract: file names, metric columns, what a run directory is, how its
files are read, and the one atomic writer.

``trpo_bench`` writes run directories and ``analysis`` reads them; both import this module
(it needs neither torch nor pandas), so the two sides cannot drift apart.

```
<run_dir>/
  config.json     run_id, grid, algo, env_id, seed, total_steps, axes, config (every setting)
  metrics.csv     header METRIC_COLUMNS, then one complete line per policy update
  status.json     state (running | done | failed | interrupted), env_steps, total_steps, updates, error
  checkpoint.pt   latest checkpoint
  eval.json       deterministic evaluation of the final policy (trpo-bench evaluate)
```
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trpo_bench.policy_stats import POLICY_METRICS

CONFIG, METRICS, STATUS, CHECKPOINT = "config.json", "metrics.csv", "status.json", "checkpoint.pt"
EVAL = "eval.json"  # written by trpo-bench evaluate
GRID = "grid.json"  # a grid directory's description
RECORD_FILES = (CONFIG, STATUS, METRICS, EVAL)  # a run's compact record: what analysis reads and export copies

METRIC_COLUMNS = [
    "env_steps", "update", "time/wall",
    "time/sps", "time/collect", "time/policy_update", "time/value_fit",
    "rollout/ep_return_mean", "rollout/ep_return_std", "rollout/ep_len_mean", "rollout/episodes",
    "eval/return_mean",
    *POLICY_METRICS,
    "value/loss", "value/explained_variance",
]
TIME_COLUMNS = [c for c in METRIC_COLUMNS if c.startswith("time/")]

# Settings that change how a run is carried out but not its numbers: left out of run ids, and
# never what tells two methods apart in analysis.
NOT_NUMERIC = frozenset({"checkpoint_every", "eval_episodes", "torch_threads", "env_threads"})

# Directories that sit inside a store but never hold runs.
NOT_RUNS = frozenset({"wandb", "figures", "tables", "__pycache__"})


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename it over ``path``.

    The temporary file is created with mode 0o666 and the process umask applies, as for
    ``open(path, "w")``: ``tempfile.mkstemp`` would leave every file 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_json_or_none(path: Path) -> Any:
    """The file's JSON, or None when it is absent or not (yet) valid JSON."""
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None


def read_config(run_dir: Path) -> dict[str, Any] | None:
    return read_json_or_none(Path(run_dir) / CONFIG)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    return read_json_or_none(Path(run_dir) / STATUS)


def complete_csv_text(text: str) -> str:
    """``text`` without a last line that lacks its newline: rows are appended one whole line
    at a time, so such a line is still being written or was cut by a crash."""
    return text if text.endswith("\n") else text[: text.rfind("\n") + 1]


def read_metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv's complete rows as strings ([] without the file)."""
    p = Path(run_dir) / METRICS
    if not p.is_file():
        return []
    rows = csv.DictReader(io.StringIO(complete_csv_text(p.read_text())))
    return [r for r in rows if None not in r and None not in r.values()]


# ---------------------------------------------------------------------------
# Finding runs
# ---------------------------------------------------------------------------


def is_run_dir(path: Path, *, partial: bool = False) -> bool:
    """A run directory holds config.json and status.json. With ``partial``, config.json alone
    will do: a run that crashed between writing the two, which analysis lists as state unknown
    but which cannot be resumed, evaluated or exported."""
    path = Path(path)
    return (path / CONFIG).is_file() and (partial or (path / STATUS).is_file())


def iter_run_dirs(root: Path, *, partial: bool = False) -> Iterator[Path]:
    """Run directories (``is_run_dir``) at or below ``root``, in sorted order. Nothing inside
    a run directory, and no hidden, ``_``-prefixed, figures, tables or W&B directory, is searched."""
    root = Path(root)
    if is_run_dir(root, partial=partial):
        yield root
        return
    if not root.is_dir():
        return
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if child.name.startswith((".", "_")) or child.name in NOT_RUNS:
            continue
        yield from iter_run_dirs(child, partial=partial)
