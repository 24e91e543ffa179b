"""Checkpoint manifests: what each rank wrote into a checkpoint (sizes and sha256), written last, so
a checkpoint with a file missing, cut short or altered is recognised before anything loads it.

Every rank writes its own `manifest_rank{r}.json` beside its files, last, in its local directory (Ray
uploads each rank's directory into one checkpoint and registers it once all are complete), so an
intact checkpoint holds one manifest per rank, and every file one lists.
"""

import hashlib
import json
import os
import posixpath
from pathlib import Path

import pyarrow.fs as pafs

MANIFEST_PREFIX = "manifest_rank"
CHUNK_BYTES = 8 * 1024 * 1024


def manifest_name(rank: int) -> str:
    return f"{MANIFEST_PREFIX}{rank}.json"


def write_manifest(directory: str | Path, *, rank: int, world_size: int) -> None:
    """Lists every file of this rank's checkpoint directory; call after everything else is written."""
    directory = Path(directory)
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(MANIFEST_PREFIX)):
        with path.open("rb") as stream:
            files[path.relative_to(directory).as_posix()] = {"bytes": path.stat().st_size,
                                                              "sha256": _sha256(stream)}
    temporary = directory / f".{manifest_name(rank)}.tmp"
    temporary.write_text(json.dumps({"rank": rank, "world_size": world_size, "files": files}, indent=1))
    os.replace(temporary, directory / manifest_name(rank))


def verify(filesystem: pafs.FileSystem, path: str) -> list[str] | None:
    """`problems` of the checkpoint at `path`, or None when it exists without any manifest (written by
    rayspeed before manifests): it cannot be verified."""
    listing = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    if listing and not any(info.base_name.startswith(MANIFEST_PREFIX) for info in listing):
        return None
    return problems(filesystem, path)


def problems(filesystem: pafs.FileSystem, path: str) -> list[str]:
    """What is wrong with the checkpoint at `path` (a directory of `filesystem`): missing manifests,
    and every listed file that is missing or differs in size or checksum. Empty when it is intact."""
    first = _read_manifest(filesystem, path, 0)
    if isinstance(first, str):
        return [first]
    found, manifests = [], [first]
    for rank in range(1, first["world_size"]):
        manifest = _read_manifest(filesystem, path, rank)
        (found if isinstance(manifest, str) else manifests).append(manifest)
    for manifest in manifests:
        for name, expected in manifest["files"].items():
            problem = _file_problem(filesystem, posixpath.join(path, name), expected)
            if problem:
                found.append(f"{name} {problem}")
    return found


def _file_problem(filesystem: pafs.FileSystem, path: str, expected: dict) -> str | None:
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        return "is missing"
    if info.size != expected["bytes"]:
        return f"has {info.size} bytes, the manifest says {expected['bytes']}"
    with filesystem.open_input_stream(path) as stream:
        if _sha256(stream) != expected["sha256"]:
            return "does not match its sha256 in the manifest"
    return None


def _read_manifest(filesystem: pafs.FileSystem, path: str, rank: int) -> dict | str:
    """The manifest of `rank`, or what is wrong with it."""
    target = posixpath.join(path, manifest_name(rank))
    if filesystem.get_file_info(target).type != pafs.FileType.File:
        return f"{manifest_name(rank)} is missing: rank {rank}'s part was not completely written"
    with filesystem.open_input_stream(target) as stream:
        try:
            manifest = json.loads(stream.read())
        except ValueError:
            return f"{manifest_name(rank)} is not readable JSON"
    if not isinstance(manifest, dict) or not {"world_size", "files"} <= manifest.keys():
        return f"{manifest_name(rank)} is not a manifest"
    return manifest


def _sha256(stream) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()
