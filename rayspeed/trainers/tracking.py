"""Weights & Biases, from the driver process only: one W&B run per training run, rows logged at the
optimizer step as the driver commits them, checkpoints as artifacts once Ray committed them
(see `trainers.checkpoint_artifacts`), results as media at the end.

Exactly once: the driver commits a row to metrics.jsonl first, then hands it to W&B. A restarted
worker group repeats steps the driver already has, and the driver drops them. A killed driver may
take with it rows W&B's service had not written yet, so a resumed run hands W&B again every committed
row after the last step W&B holds: online the resumed run's own step (from the server), offline the
last step in the earlier offline files of the run. The W&B key stays in the driver's environment:
workers and the Train controller never need it.
"""

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from rayspeed.config.tracking import TrackingConfig
from rayspeed.runs.guard import claimed_wandb_run_id
from rayspeed.runs.layout import local_run_dir
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers import wandb_records
from rayspeed.trainers.checkpoint_artifacts import (
    CheckpointCollection,
    LoggedCheckpoints,
    checkpoint_artifact,
    checkpoints_to_log,
    object_store_endpoint,
    ranked_checkpoints,
)


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
    log_checkpoints: str = "none"  # tracking.log_checkpoints, its default filled in
    job_type: str | None = None  # `sweep` for a sweep's own run beside its trials
    silent: bool = False  # no W&B lines on the console: a verb whose output is not a run's log
    checkpoints: CheckpointCollection | None = None


def run_wandb_settings(tracking: TrackingConfig, storage: RunStorage, *, run_id: str, mode: str, config: dict,
                       summary: dict, score_metric: str | None = None, job_type: str | None = None) -> WandbSettings:
    """The settings of a run's one W&B run, for its training and for what is measured of it later."""
    # wandb.init(dir=D) writes into D/wandb/: the run directory's `wandb/` when storage is local.
    directory = storage.path if storage.is_local() else str(local_run_dir(storage.name))
    checkpoints = CheckpointCollection.of(storage, run_id=run_id, score_metric=score_metric)
    return WandbSettings(project=tracking.project, entity=tracking.entity, group=tracking.group, mode=mode,
                         run_id=run_id, name=storage.name, dir=directory, config=config, summary=summary,
                         log_checkpoints=tracking.checkpoint_artifacts, checkpoints=checkpoints, job_type=job_type)


class WandbSink:
    """Logs committed rows, checkpoints and media to one W&B run and remembers how far it got."""

    def __init__(self, settings: WandbSettings):
        self._settings = settings
        self.logged_step = -1  # step 0 may be logged: the score before training (`model.init_from`)
        self._logged_checkpoints: LoggedCheckpoints | None = None  # read from W&B at the first checkpoint
        self._set_aside: list[str] = []
        self._run = None

    def start(self) -> None:
        """Starts (or resumes, same id) the W&B run; call from the driver's main thread."""
        import wandb

        settings = self._settings
        Path(settings.dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=settings.project, entity=settings.entity, group=settings.group,
                               mode=settings.mode, id=settings.run_id, name=settings.name, resume="allow",
                               dir=settings.dir, config=settings.config, job_type=settings.job_type,
                               settings=wandb.Settings(silent=settings.silent))
        self._run.summary.update(settings.summary)
        if settings.log_checkpoints != "none":  # for references to checkpoints in S3; before any thread reads it
            for key, value in object_store_endpoint(settings.checkpoints.storage.storage_uri).items():
                os.environ.setdefault(key, value)
        if settings.mode == "offline":
            self.logged_step = wandb_records.last_step(self._wandb_dir, settings.run_id)
        else:
            self.logged_step = self._run.step - 1  # a resumed run continues after the server's last step

    @property
    def run_id(self) -> str:
        return self._settings.run_id

    @property
    def where(self) -> str:
        """The run's page online; offline, its directory and the command that uploads it."""
        if self._run is None:
            return ""
        if self._settings.mode != "offline":
            return self._run.url
        return f"offline; upload it with `wandb sync {self._wandb_dir / f'offline-run-*-{self._settings.run_id}'}`"

    def log(self, rows: list[dict]) -> None:
        rows = [row for row in rows if row["step"] > self.logged_step]
        if not rows or self._run is None:
            return
        for row in rows:
            self._run.log({**scalars(row), **samples_table(row)}, step=row["step"])
        self.logged_step = rows[-1]["step"]

    def log_checkpoints(self, kept: list[tuple[str, dict]]) -> None:
        """Logs what `tracking.log_checkpoints` asks of the checkpoints Ray keeps: (path, reported
        metrics), worst first."""
        settings = self._settings
        if self._run is None or settings.log_checkpoints == "none":
            return
        if self._logged_checkpoints is None:
            self._logged_checkpoints = LoggedCheckpoints.of(self._earlier_artifacts(), settings.checkpoints.name)
            self._logged_checkpoints.forget(self._set_aside)
        ranked = ranked_checkpoints(kept, settings.checkpoints)
        chosen = checkpoints_to_log(ranked, policy=settings.log_checkpoints, logged=self._logged_checkpoints)
        for checkpoint, aliases in chosen:
            if (artifact := checkpoint_artifact(checkpoint, settings.checkpoints)) is not None:
                self._run.log_artifact(artifact, aliases=aliases)
                self._logged_checkpoints.add(checkpoint.name, aliases)

    def forget_checkpoints(self, names: list[str]) -> None:
        """Checkpoints a resumed run set aside as damaged (`runs.checkpoint_recovery`): their artifacts
        hold other weights than a new checkpoint of the same name."""
        self._set_aside = list(names)

    def log_media(self, media: dict, *, after_last: bool) -> None:
        """Charts, tables and images: with the last row logged (at the end of training), or on a step
        of their own after it (a later `rayspeed evaluate` in the resumed run)."""
        if self._run is not None and media:
            step = max(self.logged_step, 0) + (1 if after_last else 0)
            self._run.log(media, step=step)
            self.logged_step = step

    def log_artifact(self, artifact, *, aliases: list[str], registry: str | None = None) -> None:
        """An artifact of the run's results (an export); linked into W&B's registry at `registry`
        (`wandb-registry-<registry>/<collection>`, online only)."""
        self._run.log_artifact(artifact, aliases=aliases)
        if registry:
            self._run.link_artifact(artifact, registry)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None

    @property
    def _wandb_dir(self) -> Path:
        return Path(self._settings.dir) / "wandb"  # wandb.init(dir=D) writes into D/wandb/

    def _earlier_artifacts(self):
        """The artifacts this run logged before (a resumed run): offline from its earlier files, online
        from W&B's server."""
        if self._settings.mode == "offline":
            return wandb_records.artifacts(self._wandb_dir, self._settings.run_id)
        import wandb

        return wandb.Api().run(self._run.path).logged_artifacts()


@contextlib.contextmanager
def results_run(tracking: TrackingConfig, storage: RunStorage, *, mode: str, summary: dict | None = None):
    """The run's own W&B run, resumed to add what is made of the run later (`evaluate`, `export`,
    `report`); None when W&B is disabled or the directory holds no W&B run."""
    run_id = claimed_wandb_run_id(storage)
    if mode == "disabled" or run_id is None:
        yield None
        return
    settings = run_wandb_settings(tracking, storage, run_id=run_id, mode=mode, config={}, summary=summary or {})
    sink = WandbSink(dataclasses.replace(settings, silent=True))  # the verb says where the run is
    sink.start()
    try:
        yield sink
    finally:
        sink.finish()


class NullSink:
    """`tracking.mode: disabled`."""

    def start(self) -> None:
        pass

    where = ""
    logged_step = -1

    def log(self, rows: list[dict]) -> None:
        pass

    def log_checkpoints(self, ranked: list) -> None:
        pass

    def forget_checkpoints(self, names: list[str]) -> None:
        pass

    def log_media(self, media: dict, *, after_last: bool) -> None:
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


def samples_table(row: dict) -> dict:
    """A language model's epoch-end samples as the table `val/samples`."""
    if not row.get("samples"):
        return {}
    import wandb

    return {"val/samples": wandb.Table(columns=["prompt", "continuation"],
                                       data=[[sample["prompt"], sample["continuation"]] for sample in row["samples"]])}


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
