"""Checkpoints that load without running code.

A checkpoint is ``torch.save`` of a dict holding only tensors, numbers, strings, ``None``
and lists / tuples / dicts of them, read back with ``torch.load(weights_only=True)``, whose
unpickler refuses every other object: loading a crafted file cannot run code. NumPy arrays
are stored as tensors under a one-key dict ``{NDARRAY: tensor}`` and NumPy scalars as 0-d
tensors under ``{NPSCALAR: tensor}``, and turned back on load (same type, dtype and bits).

Checkpoints of format 1 (trpo-bench 0.1) pickled MuJoCo's ``MjData`` and NumPy objects, so
they load only with ``weights_only=False``, which runs whatever the file holds. They are
refused unless the caller trusts that one file (``--trust-checkpoint``); it is then read
once and rewritten in the current format.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from trpo_bench.config import ConfigError

FORMAT = 2
NDARRAY = "__ndarray__"
NPSCALAR = "__npscalar__"


class CheckpointError(ConfigError):
    """A checkpoint that cannot be loaded safely (damaged, unsafe, or of an old format)."""

    def __init__(self, path: Path, reason: str):
        self.path = Path(path)
        super().__init__([f"{path}: {reason}"])


def encode(obj: Any) -> Any:
    """Plain values and tensors only: NumPy arrays become ``{NDARRAY: tensor}``."""
    import torch

    if isinstance(obj, np.ndarray):
        return {NDARRAY: torch.from_numpy(np.array(obj, copy=True, order="C"))}
    if isinstance(obj, np.generic):
        return {NPSCALAR: torch.from_numpy(np.array(obj))}
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(encode(v) for v in obj)
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    return obj


def decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and NDARRAY in obj:
            return obj[NDARRAY].numpy().copy()
        if len(obj) == 1 and NPSCALAR in obj:
            return obj[NPSCALAR].numpy()[()]
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(decode(v) for v in obj)
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def to_bytes(state: dict[str, Any]) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"format": FORMAT, **encode(state)}, buf)
    return buf.getvalue()


def load(path: str | Path, trust: bool = False) -> tuple[dict[str, Any], bool]:
    """The checkpoint at ``path`` and whether it was upgraded from an old format.

    Raises :class:`CheckpointError` naming the file for a damaged file, unsafe content, or
    an old format without ``trust``. With ``trust``, a file that the safe loader refuses is
    read with ``weights_only=False`` (running what it holds: the caller vouched for it) and
    converted; the caller rewrites it.
    """
    import torch

    path = Path(path)
    damaged = "damaged or not a checkpoint ({}); it cannot be resumed from: delete the run directory and start the " \
              "run again"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise CheckpointError(path, f"cannot be read ({err.strerror or err})") from None
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive; anything else is cut or foreign bytes
        raise CheckpointError(path, damaged.format("not a zip archive written by torch.save"))
    try:
        raw = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):  # not an object the safe unpickler refused: damaged bytes
            raise CheckpointError(path, damaged.format(_first_line(err))) from None
        if not trust:
            raise CheckpointError(path, (
                "holds objects other than tensors and plain values, so it is not loaded (loading it could run "
                "code it carries). A checkpoint written by trpo-bench 0.1 looks like this; if you trust this "
                "file, rerun with --trust-checkpoint to load it once and rewrite it in the safe format")) from None
        raw = _load_trusted(path)
        return upgrade(raw, path), True
    except Exception as err:  # noqa: BLE001 - the safe unpickler runs no code: whatever it raises is damage
        raise CheckpointError(path, damaged.format(_first_line(err))) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        version = raw.get("format") if isinstance(raw, dict) else None
        raise CheckpointError(path, f"checkpoint format {version!r} is not one this version reads ({FORMAT})")
    state = decode(raw)
    state.pop("format")
    return state, False


def _load_trusted(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, weights_only=False, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - whatever a damaged old file raises, it is named
        raise CheckpointError(path, f"damaged or not a checkpoint ({_first_line(err)})") from None


def upgrade(old: Any, path: Path) -> dict[str, Any]:
    """A format-1 checkpoint (whole pickled ``MjData`` per env) in the current layout."""
    from trpo_bench.envs import mjdata_state

    if not isinstance(old, dict) or "agent" not in old or "venv" not in old:
        raise CheckpointError(path, "not a trpo-bench checkpoint (no agent or environment state)")
    state = dict(old)
    envs = []
    for env in old["venv"]["envs"]:
        env = dict(env)
        if "mjdata" in env:
            data = pickle.loads(env.pop("mjdata"))  # noqa: S301 - the user trusted this file
            env["mujoco"] = mjdata_state(data.model, data)
        envs.append(env)
    state["venv"] = {**old["venv"], "envs": envs}
    # Round trip through the safe encoding: what cannot be stored as plain values fails here.
    return decode(encode(state))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
