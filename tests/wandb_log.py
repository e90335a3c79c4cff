"""Reader of W&B's transaction log (``run-<id>.wandb``), for checking what a real run recorded.

The file is a LevelDB-style record log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0),
then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32 of type byte and payload,
little-endian uint16 length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4). Payloads are
serialized ``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_payloads(path: str | Path) -> list[bytes]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B" or struct.unpack("<H", data[4:6])[0] != 0xBEE1:
        raise ValueError(f"{path}: not a W&B transaction log")
    out: list[bytes] = []
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        payload = data[pos + HEADER:pos + HEADER + length]
        if zlib.crc32(bytes([kind]) + payload) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: checksum mismatch at byte {pos}")
        pos += HEADER + length
        if kind == FULL:
            out.append(payload)
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            out.append(pending + payload)
            pending = b""
    return out


def read_records(path: str | Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    records = []
    for payload in read_payloads(path):
        r = pb.Record()
        r.ParseFromString(payload)
        records.append(r)
    return records


def history(records) -> list[dict]:
    """The logged rows, one dict per ``run.log`` call, values decoded from JSON."""
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            rows.append({(it.key or "/".join(it.nested_key)): json.loads(it.value_json) for it in r.history.item})
    return rows
