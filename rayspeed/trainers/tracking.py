"""Metrics sinks on the Train controller: the run's metrics.jsonl, W&B, and the progress lines.

Rows are committed only from checkpoint reports, which carry every row since the previous
checkpoint. A restart (worker failure or `--resume`) continues from the latest checkpoint, so the
committed record never repeats or skips a step, in the file and in W&B alike.
"""

import json
import math
from dataclasses import dataclass, field

import ray.train
from ray.train import UserCallback

from rayspeed.trainers.run_storage import RunStorage

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class WandbSettings:
    """Everything `wandb.init` needs; `config` is already redacted."""

    project: str
    entity: str | None
    group: str | None
    mode: str
    run_id: str
    name: str
    dir: str
    config: dict = field(default_factory=dict)


def read_metrics(storage: RunStorage) -> list[dict]:
    text = storage.read_text(METRICS_FILE) or ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_metrics(storage: RunStorage, rows: list[dict]) -> None:
    # Object stores cannot append, so the file is rewritten whole; it holds a line per logged step.
    storage.write("".join(json.dumps(row) + "\n" for row in rows), METRICS_FILE)


def recover_metrics(storage: RunStorage) -> list[dict]:
    """Puts back into metrics.jsonl the rows of the latest checkpoint when a run was killed after Ray
    recorded that checkpoint but before the tracker committed its rows.

    Returns:
        The recovered rows (W&B has not seen them either).
    """
    if not storage.has_checkpoint():
        return []
    latest = ray.train.Result.from_path(storage.path, storage_filesystem=storage.filesystem).metrics or {}
    committed = read_metrics(storage)
    last = committed[-1]["step"] if committed else 0
    missing = [row for row in latest.get("rows", []) if row["step"] > last]
    if missing:
        write_metrics(storage, committed + missing)
    return missing


class RunTracker(UserCallback):
    """Ray Train callback (runs on the controller, once per report, with rank 0's metrics)."""

    def __init__(self, storage: RunStorage, *, total_steps: int, wandb: WandbSettings | None,
                 wandb_backlog: list[dict]):
        self._storage = storage
        self._total_steps = total_steps
        self._wandb_settings = wandb
        self._wandb_backlog = list(wandb_backlog)  # committed to the file, not yet logged to W&B
        self._committed: list[dict] | None = None  # loaded lazily, in the controller process
        self._wandb_run = None

    def after_report(self, run_context, metrics, checkpoint):
        reported = metrics[0]
        print(progress_line(reported, self._total_steps), flush=True)
        if checkpoint is not None:
            self._commit(reported["rows"])
        if reported.get("done"):
            self._finish()

    def _commit(self, rows: list[dict]) -> None:
        if self._committed is None:
            self._committed = read_metrics(self._storage)
        last = self._committed[-1]["step"] if self._committed else 0
        new = [row for row in rows if row["step"] > last]
        # W&B first: if the process dies in between, a resume re-logs rather than loses these steps.
        run = self._wandb()
        if run is not None:
            for row in [*self._wandb_backlog, *new]:
                run.log(scalars(row), step=row["step"])
        self._wandb_backlog = []
        self._committed.extend(new)
        write_metrics(self._storage, self._committed)

    def _wandb(self):
        settings = self._wandb_settings
        if settings is None or settings.mode == "disabled":
            return None
        if self._wandb_run is None:
            import wandb

            self._wandb_run = wandb.init(
                project=settings.project, entity=settings.entity, group=settings.group, mode=settings.mode,
                id=settings.run_id, name=settings.name, resume="allow", dir=settings.dir,
                config=settings.config)
        return self._wandb_run

    def _finish(self) -> None:
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None


def scalars(row: dict) -> dict[str, float]:
    """The numeric metrics of a row, namespaced for W&B (train/loss, val/accuracy, perf/...)."""
    out = {}
    for key, value in row.items():
        if key in ("step", "done") or isinstance(value, (list, dict, bool)):
            continue
        split, _, name = key.partition("_")
        if split in ("train", "val", "test"):
            out[f"{split}/{name}"] = value
        else:
            out[{"lr": "train/lr", "epoch": "epoch"}.get(key, f"perf/{key}")] = value
    return out


def progress_line(row: dict, total_steps: int) -> str:
    parts = [f"step {row['step']}/{total_steps}", f"epoch {row['epoch']:.2f}", f"train_loss {row['train_loss']:.4f}"]
    for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
        if key in row and not math.isnan(row[key]):
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['samples_per_s']:.0f} samples/s")
    return "[rayspeed] " + " | ".join(parts)
