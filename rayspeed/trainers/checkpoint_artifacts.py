"""Checkpoints as W&B artifacts (`tracking.log_checkpoints`): which committed checkpoints to log, under
which aliases, and what an artifact holds: a local checkpoint's files (uploaded), or a reference to
one in object storage (its bytes stay where Ray wrote them).

Aliases follow Ray's ranking of the checkpoints it keeps (`checkpoint.keep`, by `score_metric`):
`best` goes to the best one as it is logged and W&B moves it there from the version before; W&B
gives `latest` to the version it logged last. Ray never deletes its best checkpoint, so `best` never
names a deleted one (a checkpoint set aside as damaged hands it back to the best one kept). Each
checkpoint is one version: what a run logged before a restart is known (`LoggedCheckpoints`) and
not logged again.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import pyarrow.fs as pafs

from rayspeed.config.data import has_uri_scheme
from rayspeed.config.redact import redact_uri
from rayspeed.runs.storage import RunStorage

ARTIFACT_TYPE = "checkpoint"
ENDPOINT_ENV = "AWS_S3_ENDPOINT_URL"  # where W&B's S3 handler (boto3) finds an S3-compatible server


@dataclass(frozen=True)
class CommittedCheckpoint:
    """A checkpoint Ray Train committed and still keeps."""

    name: str  # its directory name, step_00000040
    path: str  # its path in the run's storage filesystem
    uri: str  # where it lives: a local path, or s3://bucket/... (no query)
    step: int
    epoch: float
    score: float | None  # checkpoint.score_metric's value, when the run ranks by one


@dataclass(frozen=True)
class CheckpointCollection:
    """The W&B artifact collection of one run's checkpoints, and how to reach its storage."""

    name: str  # `checkpoint-<run name>-<W&B run id>`
    score_metric: str | None
    storage: RunStorage  # the run's: its checkpoints' URIs, and an S3 endpoint in its query

    @classmethod
    def of(cls, storage: RunStorage, *, run_id: str, score_metric: str | None) -> "CheckpointCollection":
        return cls(name=f"{ARTIFACT_TYPE}-{storage.name}-{run_id}", score_metric=score_metric, storage=storage)


def ranked_checkpoints(reported: Iterable[tuple[str, dict]], collection: CheckpointCollection
                       ) -> list[CommittedCheckpoint]:
    """Ray's kept checkpoints (`get_all_reported_checkpoints`: worst first, best last) from their
    paths in the run's storage and their reported metrics."""
    metric = collection.score_metric
    return [CommittedCheckpoint(name=path.rstrip("/").rsplit("/", 1)[-1], path=path, uri=collection.storage.uri(path),
                                step=int(metrics["step"]), epoch=float(metrics.get("epoch", 0.0)),
                                score=metrics.get(metric) if metric else None)
            for path, metrics in reported]


def checkpoints_to_log(ranked: list[CommittedCheckpoint], *, policy: str, logged: "LoggedCheckpoints"
                       ) -> list[tuple[CommittedCheckpoint, list[str]]]:
    """What to log now, in step order, with its aliases: `best` the best kept checkpoint; `all` every
    kept one; never one already logged, but the best again when `best` is on another version (its
    checkpoint was set aside as damaged): W&B keeps one version per content and moves the alias."""
    if policy == "none" or not ranked:
        return []
    best = ranked[-1]
    candidates = ranked if policy == "all" else [best]
    chosen = [checkpoint for checkpoint in candidates if checkpoint.name not in logged.names]
    if best.name in logged.names and logged.best != best.name:
        chosen.append(best)
    return [(checkpoint, ["best"] if checkpoint is best else []) for checkpoint in sorted(chosen, key=lambda c: c.step)]


def checkpoint_artifact(checkpoint: CommittedCheckpoint, collection: CheckpointCollection):
    """The artifact of one checkpoint: its metadata (step, epoch, score) and its files, or a reference
    to them with each object's checksum (ETag) when they live in object storage. None when the
    checkpoint is gone (`checkpoint.keep` deleted it after Ray listed it)."""
    import wandb

    if collection.storage.filesystem.get_file_info(checkpoint.path).type == pafs.FileType.NotFound:
        return None
    metadata = {"checkpoint": checkpoint.name, "step": checkpoint.step, "epoch": checkpoint.epoch,
                "uri": redact_uri(checkpoint.uri)}
    if collection.score_metric and checkpoint.score is not None:
        metadata[collection.score_metric] = checkpoint.score
    artifact = wandb.Artifact(collection.name, type=ARTIFACT_TYPE, metadata=metadata)
    if has_uri_scheme(checkpoint.uri):
        artifact.add_reference(checkpoint.uri.rstrip("/") + "/", checksum=True)
    else:
        # Copied to W&B's staging directory until uploaded (offline: until `wandb sync`), not cached after.
        artifact.add_dir(checkpoint.uri, skip_cache=True)
    return artifact if artifact.manifest.entries else None


def object_store_endpoint(storage_uri: str) -> dict[str, str]:
    """`s3://b/x?endpoint_override=host:port&scheme=http` (pyarrow's options) as the variable where
    W&B's S3 handler (boto3) finds an S3-compatible server; empty without an override."""
    options = dict(parse_qsl(storage_uri.partition("?")[2]))
    override = options.get("endpoint_override")
    if not override:
        return {}
    return {ENDPOINT_ENV: override if "://" in override else f"{options.get('scheme', 'https')}://{override}"}


@dataclass
class LoggedCheckpoints:
    """The checkpoints a run's W&B artifacts hold, and which one `best` is on."""

    names: set[str]
    best: str | None = None

    def forget(self, names: list[str]) -> None:
        """Checkpoints set aside as damaged: a new checkpoint of the same name is another version."""
        self.names -= set(names)
        self.best = None if self.best in names else self.best

    def add(self, name: str, aliases: list[str]) -> None:
        self.names.add(name)
        if "best" in aliases:
            self.best = name

    @classmethod
    def of(cls, records: Iterable, collection: str) -> "LoggedCheckpoints":
        """From artifacts in the order they were logged: offline records, or the server's artifacts of
        the run (whose aliases are current)."""
        logged = cls(set())
        for record in records:
            if record.name.split(":")[0] != collection or record.type != ARTIFACT_TYPE:
                continue
            metadata = record.metadata if isinstance(record.metadata, dict) else json.loads(record.metadata or "{}")
            if name := metadata.get("checkpoint"):
                logged.add(name, list(record.aliases))
        return logged


