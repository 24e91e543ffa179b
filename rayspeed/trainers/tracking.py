"""Weights & Biases, from the driver process only: one W&B run per training run, rows logged at the
optimizer step as the driver commits them.

Exactly once: the driver commits a row to metrics.jsonl first, then hands it to W&B. A restarted
worker group repeats steps the driver already has, and the driver drops them. A killed driver may
take with it rows W&B's service had not written yet, so a resumed run hands W&B again every committed
row after the last step W&B holds: online the resumed run's own step (from the server), offline the
last step in the earlier offline files of the run. The W&B key stays in the driver's environment:
workers and the Train controller never need it.
"""

from dataclasses import dataclass, field
from pathlib import Path

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.runs.layout import local_run_dir
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers import wandb_records


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
    summary: dict = field(default_factory=dict)  # flat `data/...` counts, set once in the run's summary


def run_wandb_settings(cfg: ExperimentConfig, storage: RunStorage, *, run_id: str, mode: str, config: dict,
                       summary: dict) -> WandbSettings:
    """The settings of a run's one W&B run, for its training and for what is measured of it later."""
    tracking = cfg.tracking
    # wandb.init(dir=D) writes into D/wandb/: the run directory's `wandb/` when storage is local.
    directory = storage.path if storage.is_local() else str(local_run_dir(cfg.run.name))
    return WandbSettings(project=tracking.project, entity=tracking.entity, group=tracking.group, mode=mode,
                         run_id=run_id, name=cfg.run.name, dir=directory, config=config, summary=summary)


class WandbSink:
    """Logs committed rows to one W&B run and remembers how far it got."""

    def __init__(self, settings: WandbSettings):
        self._settings = settings
        self.logged_step = -1  # step 0 may be logged: the score before training (`model.init_from`)
        self._run = None

    def start(self) -> None:
        """Starts (or resumes, same id) the W&B run; call from the driver's main thread."""
        import wandb

        settings = self._settings
        Path(settings.dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=settings.project, entity=settings.entity, group=settings.group,
                               mode=settings.mode, id=settings.run_id, name=settings.name, resume="allow",
                               dir=settings.dir, config=settings.config)
        self._run.summary.update(settings.summary)
        if settings.mode == "offline":
            self.logged_step = wandb_records.last_step(Path(settings.dir) / "wandb", settings.run_id)
        else:
            self.logged_step = self._run.step - 1  # a resumed run continues after the server's last step

    def log(self, rows: list[dict]) -> None:
        rows = [row for row in rows if row["step"] > self.logged_step]
        if not rows or self._run is None:
            return
        for row in rows:
            self._run.log(scalars(row), step=row["step"])
        self.logged_step = rows[-1]["step"]

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


class NullSink:
    """`tracking.mode: disabled`."""

    def start(self) -> None:
        pass

    def log(self, rows: list[dict]) -> None:
        pass

    def finish(self) -> None:
        pass


def data_summary(report: dict) -> dict[str, float]:
    """The data report (rows read, dropped by reason, missing values, split sizes, baselines) as flat
    W&B summary keys: `data/rows_read`, `data/rows_dropped/no label`, `data/split_rows/train`, ..."""
    flat = {}
    for key, value in report.items():
        if isinstance(value, dict):
            flat.update({f"data/{key}/{name}": number for name, number in value.items()})
        else:
            flat[f"data/{key}"] = value
    return flat


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
