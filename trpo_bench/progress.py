"""Progress display of a run or a grid: a live line on a terminal, plain periodic lines elsewhere
(CI logs, workers' train.log)."""

from __future__ import annotations

import collections
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


def fmt_steps(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    return f"{n:,.0f}"


def run_detail(episodes: int, last_return: float) -> str:
    """The part of a training run's line that is not steps, rate or ETA."""
    ret = "-" if not math.isfinite(last_return) else f"{last_return:.1f}"
    return f"episodes {episodes:,}  return {ret}"


class Progress:
    """Steps out of a total, steps/s and ETA, with a caller's ``detail`` (a run's episodes and
    return; a grid's done / running / failed counts); events print as lines of their own.

    The rate is measured from the first :meth:`update` over the last ``window`` seconds, so
    start-up (imports, spawning workers) does not weigh on the ETA once steps flow.
    """

    def __init__(self, label: str, total_steps: int, stream: TextIO | None = None, interval: float = 10.0,
                 live: bool | None = None, window: float = 120.0):
        self.label = label
        self.total = total_steps
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self.window = window
        self._samples: collections.deque = collections.deque()  # (time, steps)
        self._last_print = -math.inf
        self._drawn = False
        self._line = ""
        self._printed = ""

    def update(self, steps: int, detail: str = "", final: bool = False) -> None:
        """Record ``steps`` done so far; draw the line (live), or print it every ``interval`` s."""
        now = time.perf_counter()
        first = not self._samples
        self._samples.append((now, steps))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        self._line = self._format(steps, detail, now)
        if first and not final:
            return
        if self.live:
            self.stream.write("\r\033[K" + self._line + ("\n" if final else ""))
            self._drawn = not final
        elif final or now - self._last_print >= self.interval:
            self.stream.write(self._line + "\n")
            self._printed, self._last_print = self._line, now
        self.stream.flush()

    def event(self, text: str) -> None:
        """A line of its own (a run finished, failed, ...), above the live line."""
        if self._drawn:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        if self._drawn:
            self.stream.write(self._line)
        self.stream.flush()

    def finish(self, steps: int, detail: str = "") -> None:
        """The final line, unless a plain line just said the same."""
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
        line = self._format(steps, detail, time.perf_counter())
        if line != self._printed:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _format(self, steps: int, detail: str, now: float) -> str:
        t0, s0 = self._samples[0] if self._samples else (now, steps)
        # One sample (a resumed run's single update) has no rate to tell yet.
        sps = (steps - s0) / (now - t0) if now > t0 and len(self._samples) > 1 else float("nan")
        left = max(self.total - steps, 0)
        eta = left / sps if sps > 0 else float("nan")
        pct = 100.0 * min(steps, self.total) / max(self.total, 1)
        parts = [self.label, f"{fmt_steps(steps)}/{fmt_steps(self.total)} steps ({pct:.0f}%)", detail,
                 f"{sps:,.0f} steps/s" if math.isfinite(sps) else "- steps/s",
                 f"ETA {fmt_duration(eta) if left > 0 else '0:00'}"]
        return "  ".join(p for p in parts if p)
