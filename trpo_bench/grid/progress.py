"""A grid's progress line and summary table."""

from __future__ import annotations

import math
from pathlib import Path

from trpo_bench.grid.spec import GridRun
from trpo_bench.grid.state import read_status
from trpo_bench.progress import Progress, fmt_duration


class GridSteps:
    """A grid's steps (each run's ``env_steps`` from its status.json, written after every update)
    and its done / running / failed counts, shown through one :class:`Progress` line."""

    def __init__(self, grid: str, runs: list[GridRun], run_dirs: dict[str, Path], interval: float = 30.0):
        self.run_dirs = run_dirs
        self.total = {r.run_id: r.config.total_steps for r in runs}
        self.steps = {rid: 0 for rid in self.total}
        for rid in self.total:
            self.refresh(rid)
        self.done = self.failed = 0
        self.running: set[str] = set()  # submitted and not ended: training, or waiting to start
        self.display = Progress(f"[{grid}]", sum(self.total.values()), interval=interval)

    def refresh(self, rid: str) -> bool:
        """Read the run's steps; True when it is training now (not waiting for a worker or a SLURM slot)."""
        status = read_status(self.run_dirs[rid])
        if status is None:
            return False
        self.steps[rid] = min(int(status.get("env_steps", 0)), self.total[rid])
        return status.get("state") == "running"

    def _now(self) -> tuple[int, str]:
        training = sum(self.refresh(rid) for rid in self.running)
        waiting = len(self.running) - training
        detail = (f"{self.done}/{len(self.total)} done, {training} running"
                  + (f", {waiting} waiting" if waiting else "") + f", {self.failed} failed")
        return sum(self.steps.values()), detail

    def tick(self) -> None:
        self.display.update(*self._now())

    def event(self, text: str) -> None:
        self.display.event(text)

    def finish(self) -> None:
        self.display.finish(*self._now())


def format_table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def fmt(row):
        return "  ".join(str(x).rjust(w) if i in right else str(x).ljust(w)
                         for i, (x, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def fmt_return(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.1f}"


def fmt_duration_or_dash(seconds: float) -> str:
    return fmt_duration(seconds) if math.isfinite(seconds) else "-"
