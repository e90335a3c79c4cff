"""What two runs are compared on, for the tests that require a run to equal another bit for
bit: ``metrics.csv`` without the wall-clock columns, and the final checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from trpo_bench import checkpoint
from trpo_bench.store import TIME_COLUMNS


def metric_rows(run_dir: Path) -> list[dict]:
    """``run_dir``'s metrics rows, less the ``time/*`` columns."""
    with open(Path(run_dir) / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in csv.DictReader(fh)]


def assert_same_checkpoint(a_dir: Path, b_dir: Path) -> None:
    """Policy and value parameters, and the batched envs' physics, equal bit for bit."""
    a, _ = checkpoint.load(Path(a_dir) / "checkpoint.pt")
    b, _ = checkpoint.load(Path(b_dir) / "checkpoint.pt")
    for part in ("policy", "value"):
        for k in a["agent"][part]:
            assert torch.equal(a["agent"][part][k], b["agent"][part][k]), (part, k)
    assert a["venv"]["physics"].tobytes() == b["venv"]["physics"].tobytes()
