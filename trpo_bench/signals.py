"""Installing and restoring SIGINT / SIGTERM handlers (a run and a grid both stop gracefully)."""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install(handler: Callable[[int, Any], None]) -> dict | None:
    """Route SIGINT and SIGTERM to ``handler``; return the previous handlers (None off the main thread,
    where Python cannot install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in old:
        signal.signal(s, handler)
    return old


def restore(old: dict | None) -> None:
    if old:
        for s, h in old.items():
            signal.signal(s, h)
