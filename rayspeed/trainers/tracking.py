"""Metrics sinks on the Train controller: the run's metrics.jsonl, W&B, and the progress lines.

Rows are staged as reports arrive and committed only when a checkpoint covering them is
persisted. A restart (worker failure or `--resume`) continues from that checkpoint, so the
committed record never repeats or skips a step, in the file and in W&B alike.
"""

import json
import math
from dataclasses import dataclass, field

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


class RunTracker(UserCallback):
    """Ray Train callback (runs on the controller, once per report, with rank 0's metrics)."""

    def __init__(self, storage: RunStorage, *, total_steps: int, wandb: WandbSettings | None):
        self._storage = storage
        self._total_steps = total_steps
        self._wandb_settings = wandb
        self._committed: list[dict] | None = None  # loaded lazily, in the controller process
        self._staged: list[dict] = []
        self._wandb_run = None

    def after_report(self, run_context, metrics, checkpoint):
        reported = dict(metrics[0])
        for row in [*reported.pop("history", []), reported]:
            self._stage(row)
        print(progress_line(reported, self._total_steps), flush=True)
        if checkpoint is not None:
            self._commit()
        if reported.get("done"):
            self._finish()

    def _stage(self, row: dict) -> None:
        committed = self._load_committed()
        if committed and row["step"] <= committed[-1]["step"]:
            return  # already recorded by the run this one resumed
        # A step at or before a staged one means the workers restarted from the latest checkpoint.
        self._staged = [staged for staged in self._staged if staged["step"] < row["step"]]
        self._staged.append(row)

    def _commit(self) -> None:
        committed = self._load_committed()
        committed.extend(self._staged)
        # Object stores cannot append, so the file is rewritten whole; it holds one line per report.
        self._storage.write("".join(json.dumps(row) + "\n" for row in committed), METRICS_FILE)
        run = self._wandb()
        for row in self._staged:
            if run is not None:
                run.log(scalars(row), step=row["step"])
        self._staged = []

    def _load_committed(self) -> list[dict]:
        if self._committed is None:
            self._committed = read_metrics(self._storage)
        return self._committed

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
