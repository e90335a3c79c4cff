"""The only module that talks to Weights & Biases.

W&B runs offline unless told otherwise (``--wandb online``, ``WANDB_MODE``, or an API
key in the environment), writing under the run directory so ``wandb sync`` can
upload later. A W&B failure never stops training: the local run store is the record.
"""

from __future__ import annotations

import math
import os
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
                 resume: bool = False):
        self.mode = resolve_mode(mode)
        self.run = None
        if self.mode == "disabled":
            return
        try:
            import wandb

            (Path(run_dir) / "wandb").mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=project, group=group, name=run_id, tags=list(tags or []), config=config,
                dir=str(run_dir), mode=self.mode, id=_wandb_id(run_id, config),
                resume="allow" if resume else None, reinit="create_new",
                settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
            )
            self.run.define_metric("env_steps")
            self.run.define_metric("*", step_metric="env_steps")
        except Exception as err:  # the run store still records everything
            print(f"warning: W&B disabled for this run ({type(err).__name__}: {err})", file=sys.stderr)
            self.run = None

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


def _wandb_id(run_id: str, config: dict[str, Any]) -> str:
    """A stable W&B id, so a resumed run continues the same W&B run."""
    import hashlib

    key = f"{config.get('grid')}/{run_id}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]
