"""Work beside the calling thread: forked sidecar processes, and threads where those cannot run.

- :class:`Sidecar`, on x86-64 Linux: a forked process that runs a fixed set of handlers on
  command, over :func:`shared` memory allocated before the fork. It and its caller meet by
  spinning on that memory, which costs a few microseconds where a thread woken through a lock
  costs some 45 us on a 2-core machine. The batched MuJoCo path gives each sidecar a slice of
  its envs' MjData to step (a HalfCheetah-v5 env steps in about 29 us, so a thread's round trip
  took back most of what the second core gave); a run fits its value network in one while
  the policy update runs (a thread there contends with the update for the GIL). A sidecar
  spins for a while after each command (:data:`SPIN_S` unless told) and then sleeps on a
  pipe, so an idle one costs nothing.
- :class:`StepWorker`, elsewhere: a thread that steps envs from a shared iterator; MuJoCo's
  bindings release the GIL inside ``mj_step``.

A sidecar runs the same NumPy and MuJoCo calls on the same inputs as the caller would, so
the bits do not depend on where they run (``tests/test_mujoco_batch.py``,
``tests/test_sidecars.py``). It relies on x86's ordering of stores (a command's data is
written before its sequence number, a result before its completion count), which is why
other CPUs use threads, or run the value fit in line.

A sidecar ignores SIGINT and SIGTERM (its parent handles them, and needs the sidecar to save
what it holds), SIGHUP and any signal its parent handles in Python (SLURM's warning signal);
it is killed by the kernel when its parent dies (``PR_SET_PDEATHSIG``),
closes every file descriptor it inherited (a run's lock among them), and never returns into
the caller's code: it leaves through ``os._exit``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import queue
import select
import signal
import sys
import threading
import time
import weakref
from typing import Callable

import numpy as np

# Sidecar processes where they are safe: Linux (prctl, fork) on x86-64 (ordered stores).
PROCESSES = sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")
SPIN_S = 0.002  # how long an idle sidecar spins before it sleeps on its pipe
_NAP_S = 0.01  # a sleeping sidecar's wake-up interval, to see its parent gone

# The control words' slots.
_SEQ, _KIND, _DONE, _ASLEEP, _FAILED = range(5)
_ERR_BYTES = 2000
# Signals a sidecar ignores: those that stop a run, which its parent handles (and needs the
# sidecar to save what it holds), and SIGHUP; besides these, any its parent handles in Python
# (SLURM's warning signal), whose handlers are the parent's business.
_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_FENCE = threading.Lock()


def _fence() -> None:
    """A full memory barrier (an uncontended lock's atomic instructions). Posting a command
    and falling asleep each store one word and then load the other's; x86 may let the load
    pass the store, and then a wake-up is lost until the sleeper's next nap ends."""
    _FENCE.acquire()
    _FENCE.release()


def shared(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """A zeroed array in anonymous shared memory, which a forked process shares."""
    dtype = np.dtype(dtype)
    size = max(1, int(np.prod(shape)) * dtype.itemsize)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class SidecarDied(RuntimeError):
    """A sidecar is gone: killed from outside, or out of memory."""


class Sidecar:
    """A forked process, ``name``d in messages (\"the process stepping envs 4-7\"):
    ``handlers[kind]()`` runs there for each command. :meth:`post` hands it one; :meth:`wait`
    returns when it is done, raising what it raised (as RuntimeError with its text) or
    :class:`SidecarDied`. What the handlers read and write must live in :func:`shared` memory
    allocated before the fork."""

    def __init__(self, name: str, handlers: dict[int, Callable[[], None]], spin_s: float = SPIN_S):
        self.name = name
        self._ctl = shared((_FAILED + 1,), np.int64)
        self._err = shared((_ERR_BYTES,), np.uint8)
        self._seq = 0
        self.how = ""  # how it ended, once it has (or "closed")
        wake_r, self._wake_w = os.pipe()
        parent = os.getpid()
        # Signals wait until the sidecar has set its own dispositions (the parent's come after).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _IGNORED + (signal.SIGUSR1, signal.SIGUSR2))
        try:
            pid = os.fork()
        except OSError:
            os.close(wake_r)
            os.close(self._wake_w)
            raise
        finally:
            if os.getpid() == parent:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if pid == 0:  # the sidecar: serve until the parent kills it or dies
            try:
                _serve(handlers, self._ctl, self._err, wake_r, parent, spin_s, blocked)
            finally:
                os._exit(1)
        os.close(wake_r)
        os.set_blocking(self._wake_w, False)
        self.pid = pid
        self._reap = weakref.finalize(self, _kill, pid, self._wake_w, parent)

    def post(self, kind: int) -> None:
        ctl = self._ctl
        ctl[_KIND] = kind
        self._seq += 1
        ctl[_SEQ] = self._seq  # last: the sidecar starts when it sees this
        _fence()
        if ctl[_ASLEEP] and not self.how:
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, BrokenPipeError):  # a full pipe: awake anyway; a broken one: wait() says so
                pass

    def wait(self) -> None:
        ctl, seq, n = self._ctl, self._seq, 0
        while ctl[_DONE] != seq:
            n += 1
            if n & 1023 == 0:
                if n >= 64 * 1024:  # a long wait: the sidecar may share this core, let it run
                    os.sched_yield()
                if self._exited():
                    raise SidecarDied(f"{self.name} (pid {self.pid}) {self.how}; what it held is lost")
        if ctl[_FAILED]:
            ctl[_FAILED] = 0
            text = bytes(self._err).rstrip(b"\0").decode(errors="replace")
            self._err[:] = 0
            raise RuntimeError(f"in {self.name}: {text}")

    def _exited(self) -> bool:
        if self.how:
            return True
        status = None
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                return False
        except ChildProcessError:  # reaped elsewhere
            pass
        if self._reap.detach():  # reaped: nothing left to kill, and its pid may be another's by now
            os.close(self._wake_w)
        self.how = "exited"
        if status is not None:
            code = os.waitstatus_to_exitcode(status)
            self.how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        return True

    def close(self) -> None:
        self._reap()
        self.how = self.how or "closed"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal
        return f"signal {number}"


def _kill(pid: int, wake_w: int, creator: int) -> None:
    if os.getpid() != creator:  # a forked copy of the creator exiting: the sidecar is not its own
        return
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    os.close(wake_w)


def _serve(handlers, ctl: np.ndarray, err: np.ndarray, wake_r: int, parent: int, spin_s: float,
           mask: set) -> None:
    """The sidecar's whole life (in the forked child); ``mask``: the signal mask to restore."""
    for sig in signal.valid_signals():
        if sig in _IGNORED or callable(signal.getsignal(sig)):
            signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)
    for fd in [int(x) for x in os.listdir("/proc/self/fd")]:  # listdir's own descriptor is gone by now
        if fd > 2 and fd != wake_r:
            try:
                os.close(fd)
            except OSError:
                pass
    seq = 0
    while True:
        spun, start = 0, time.perf_counter()
        while ctl[_SEQ] == seq:
            spun += 1
            if spun & 255 == 0 and time.perf_counter() - start > spin_s:
                ctl[_ASLEEP] = 1
                _fence()
                if ctl[_SEQ] == seq:
                    if select.select([wake_r], [], [], _NAP_S)[0]:
                        os.read(wake_r, 4096)
                    elif os.getppid() != parent:
                        os._exit(0)
                ctl[_ASLEEP] = 0
        seq = int(ctl[_SEQ])
        try:
            handlers[int(ctl[_KIND])]()
        except BaseException as e:  # handed to the parent's wait()
            text = f"{type(e).__name__}: {e}".encode()[:_ERR_BYTES - 1]
            err[:len(text)] = np.frombuffer(text, np.uint8)
            ctl[_FAILED] = 1
        ctl[_DONE] = seq


class StepWorker:
    """A thread that runs ``fn(todo)`` beside the calling thread each time :meth:`start`
    hands it the shared indices; :meth:`join` waits for it and returns what it raised (None
    if nothing)."""

    def __init__(self, fn: Callable[[object], None]):
        self._fn = fn
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="mujoco-batch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (todo := self._todo.get()) is not None:
            try:
                self._fn(todo)
                self._done.put(None)
            except BaseException as err:  # handed to the stepping thread by join()
                self._done.put(err)

    def start(self, todo) -> None:
        self._todo.put(todo)

    def join(self) -> BaseException | None:
        return self._done.get()

    def stop(self) -> None:
        self._todo.put(None)
        self._thread.join()
