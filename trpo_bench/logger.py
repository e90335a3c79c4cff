"""The only module that talks to Weights & Biases.

W&B runs offline unless told otherwise (``--wandb online``, ``WANDB_MODE``, or an API
key in the environment), writing under the run directory so ``wandb sync`` can
upload later. A W&B failure never stops training: the local run store is the record.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

MODES = ("offline", "online", "disabled")


def resolve_mode(requested: str | None) -> str:
    """``--wandb`` if given, else WANDB_MODE, else online with an API key, else offline."""
    if requested:
        return requested
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("offline", "online", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class WandbLogger:
    """One W&B run per training run; ``env_steps`` is the step metric of every key."""

    def __init__(self, run_dir: Path, run_id: str, config: dict[str, Any], mode: str | None = None,
                 project: str = "trpo-bench", group: str | None = None, tags: list[str] | None = None,
                 resume: bool = False, run_key: str | None = None, history: list[dict[str, Any]] | None = None):
        """``history``: on resume, the rows already in metrics.csv (up to the checkpoint).

        Offline, W&B keeps what a run logged in a buffer that a SIGKILL loses, so a resumed
        run's offline record is written anew: the rows of ``history`` first, then the new ones,
        and the records the run's earlier processes left are removed. The newest record then
        holds the whole history, equal to metrics.csv, for ``wandb sync`` to upload once.
        Online, the server already holds what it received and nothing is replayed.
        """
        self.mode = resolve_mode(mode)
        self.run = None
        if self.mode == "disabled":
            return
        key = run_key or wandb_id(Path(run_dir), run_id, config.get("grid"))
        try:
            import wandb

            (Path(run_dir) / "wandb").mkdir(parents=True, exist_ok=True)
            if self.mode == "offline" and resume:
                for old in (Path(run_dir) / "wandb").glob(f"offline-run-*-{key}"):
                    shutil.rmtree(old, ignore_errors=True)
            self.run = wandb.init(
                project=project, group=group, name=run_id, tags=list(tags or []), config=config,
                dir=str(run_dir), mode=self.mode, id=key,
                resume="allow" if resume else None, reinit="create_new",
                settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
            )
            self.run.define_metric("env_steps")
            self.run.define_metric("*", step_metric="env_steps")
        except Exception as err:  # the run store still records everything
            print(f"warning: W&B disabled for this run ({type(err).__name__}: {err})", file=sys.stderr)
            self.run = None
            return
        if self.mode == "offline" and resume:
            for row in history or []:
                self.log({k: _number(v) for k, v in row.items() if v != ""})

    def log(self, row: dict[str, Any]) -> None:
        if self.run is None:
            return
        # Keys that do not apply are absent, never 0 (NaN in the CSV).
        data = {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
        self.run.log(data)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            try:
                self.run.finish(exit_code=exit_code)
            finally:
                self.run = None


def _number(text: str) -> float | int:
    """A metrics.csv value as it was logged: integers stay integers (floats are written with
    repr, so they read back to the same bits)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def wandb_id(run_dir: Path, run_id: str, grid: str | None) -> str:
    """The W&B id of a run, the same on every resume, so W&B sees one run.

    A run records it in config.json (``wandb_id``). For a run stored before that, the id of
    the W&B record already in its directory is reused, else one is hashed from grid and run id.
    """
    import hashlib

    found = sorted(p.name for p in (Path(run_dir) / "wandb").glob("*run-*-*") if p.is_dir())
    if found:  # named <offline-|>run-<date>_<time>-<id>: the first record's id
        return found[0].rsplit("-", 1)[-1]
    return hashlib.sha1(f"{grid}/{run_id}".encode()).hexdigest()[:16]


def preflight(requested: str | None) -> tuple[str, str | None]:
    """The W&B mode to use, decided once before any run starts, and a line to show when it
    differs from what was asked. ``online`` without an API key, or without a reachable W&B
    server, falls back to ``offline`` (``wandb sync`` uploads later) instead of each run
    waiting for W&B's own time-out."""
    mode = resolve_mode(requested)
    if mode != "online":
        return mode, None
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    from urllib.parse import urlparse

    url = urlparse(base)
    host = url.hostname or "api.wandb.ai"
    if not os.environ.get("WANDB_API_KEY") and not _netrc_has(host):
        return "offline", ("W&B: no API key (set WANDB_API_KEY or run `wandb login`); logging offline, "
                           "upload later with `wandb sync`")
    import socket

    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as err:
        return "offline", (f"W&B: cannot reach {host}:{port} ({err.strerror or err}); logging offline, "
                           "upload later with `wandb sync`")
    return mode, None


def _netrc_has(host: str) -> bool:
    import netrc

    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False
