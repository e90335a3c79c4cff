"""Progress display: a live line on a terminal, plain periodic lines elsewhere (CI logs, workers)."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


def fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Shows env steps, episodes, last return, steps/s and ETA of one run."""

    def __init__(self, label: str, total_steps: int, stream: TextIO | None = None, interval: float = 10.0,
                 live: bool | None = None):
        self.label = label
        self.total = total_steps
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self._last_print = -math.inf
        self._start_time = time.perf_counter()
        self._start_steps: int | None = None

    def update(self, env_steps: int, episodes: int, last_return: float, final: bool = False) -> None:
        now = time.perf_counter()
        if self._start_steps is None:
            self._start_steps, self._start_time = env_steps, now
            if not final:
                return
        elapsed = now - self._start_time
        sps = (env_steps - self._start_steps) / elapsed if elapsed > 0 else float("nan")
        eta = (self.total - env_steps) / sps if sps and sps > 0 else float("nan")
        pct = 100.0 * min(env_steps, self.total) / self.total
        ret = "-" if not math.isfinite(last_return) else f"{last_return:.1f}"
        line = (f"{self.label}  {env_steps:,}/{self.total:,} steps ({pct:.0f}%)  episodes {episodes:,}  "
                f"return {ret}  {sps:,.0f} steps/s  ETA {fmt_duration(max(eta, 0.0))}")
        if self.live:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
            self.stream.flush()
        elif final or now - self._last_print >= self.interval:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_print = now
