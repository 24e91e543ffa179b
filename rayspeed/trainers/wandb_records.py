"""Reads W&B offline runs back with wandb's own protobuf records (wandb 0.31 has no Python reader).

A resumed offline run needs it to know which steps and checkpoint artifacts the earlier run's files
hold (offline, W&B cannot tell). A `.wandb` file is a LevelDB-log stream: a 7-byte header, then
32 KiB blocks of records, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle,
4 last); a file whose writer was killed may end in a partial record, which is skipped.
"""

import json
import struct
from pathlib import Path

from google.protobuf.message import DecodeError
from wandb.proto.wandb_internal_pb2 import ArtifactRecord, Record

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path):
    data = path.read_bytes()
    if data[:4] != b":W&B":
        return
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
        if len(chunk) < length:
            return  # cut off by a kill
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
    try:
        record.ParseFromString(raw)
    except DecodeError:
        pass  # an unreadable record is an empty one
    return record


def run_records(wandb_dir: Path, run_id: str):
    """Every record of every offline run directory of `run_id`, in the order they were written."""
    for run_file in sorted(Path(wandb_dir).glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        yield from records(run_file)


def history(wandb_dir: Path, run_id: str) -> list[dict]:
    """Every history row of every offline run directory of `run_id`, in the order they were written."""
    return [{(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
            for record in run_records(wandb_dir, run_id) if record.WhichOneof("record_type") == "history"]


def artifacts(wandb_dir: Path, run_id: str) -> list[ArtifactRecord]:
    """Every artifact the offline run directories of `run_id` logged, in order (a version logged twice
    appears twice: W&B's server keeps one version per digest and moves the aliases)."""
    return [record.artifact for record in run_records(wandb_dir, run_id)
            if record.WhichOneof("record_type") == "artifact"]


def last_step(wandb_dir: Path, run_id: str) -> int:
    """The highest step any offline run directory of `run_id` holds (-1 when none)."""
    return max((row.get("_step", 0) for row in history(wandb_dir, run_id)), default=-1)
