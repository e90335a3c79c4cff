"""Exclusive ownership of a file: one process at a time trains a run or launches a grid."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path


class FileLock:
    """An exclusive ``fcntl.flock`` on a file, which records who holds it.

    The kernel drops the lock when the holder dies (even by SIGKILL), so a stale lock file
    never blocks a relaunch. On NFS, ``flock`` is forwarded to the server (NFSv4, Linux >= 2.6.12).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0, note: str = "") -> bool:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides who may read it
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if note:
            info["command"] = note
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def is_locked(self, wait: float = 0.0) -> bool:
        """True when another process holds the lock (a probe, retried for ``wait`` seconds).

        The probe opens the file read-only and takes a shared lock for a moment, so it leaves
        the holder record as it is."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return False
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return True
                    time.sleep(0.1)
        finally:
            os.close(fd)  # also releases the shared lock

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError):
            return "another process"
