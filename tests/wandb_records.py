"""Reads W&B offline runs back with wandb's own protobuf records (wandb 0.31 has no Python reader).

A `.wandb` file is a LevelDB-log stream: a 7-byte header, then 32 KiB blocks of records, each
with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last).
"""

import json
import struct
from pathlib import Path

from wandb.proto.wandb_internal_pb2 import Record

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path):
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pending = HEADER, b""
    while position + HEADER <= len(data):
        if BLOCK - position % BLOCK < HEADER:  # block trailer too small for a header: skip to next block
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + HEADER])
        position += HEADER
        if kind == 0 and length == 0:
            break
        chunk = data[position:position + length]
        position += length
        if kind == 1:
            yield _parse(chunk)
        elif kind == 2:
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
            if kind == 4:
                yield _parse(pending)
                pending = b""


def _parse(raw: bytes) -> Record:
    record = Record()
    record.ParseFromString(raw)
    return record


def history(wandb_dir: Path, run_id: str) -> list[dict]:
    """Every history row of every offline run directory of `run_id`, in the order they were written."""
    rows = []
    for run_file in sorted(Path(wandb_dir).glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in records(run_file):
            if record.WhichOneof("record_type") == "history":
                rows.append({(item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def config(wandb_dir: Path, run_id: str) -> dict:
    """The run config as W&B recorded it: the run record's config, then later config updates."""
    found = {}
    for run_file in sorted(Path(wandb_dir).glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in records(run_file):
            kind = record.WhichOneof("record_type")
            updates = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
            for item in updates:
                found[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return found


def kept_history(wandb_dir: Path, run_id: str) -> list[dict]:
    """The rows W&B keeps once the offline runs are synced in order: a step is kept only if it is
    higher than the last kept one ("steps must only increase"), as the client does online."""
    kept: list[dict] = []
    for row in history(wandb_dir, run_id):
        if not kept or row["_step"] > kept[-1]["_step"]:
            kept.append(row)
    return kept
