"""A sweep in W&B: beside one run per trial, the sweep's own run in the same group (job type
`sweep`) holding a table of every trial's values and metrics and the sweep plots; and the alias
`sweep-best` on the best trial's best checkpoint artifact, in that trial's checkpoint collection."""

import json

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.redact import redact
from rayspeed.runs.guard import claimed_wandb_run_id
from rayspeed.runs.layout import SUMMARY_FILE, SWEEP_CURVES_FILE, SWEEP_VALUES_FILE
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers.checkpoint_artifacts import (
    CheckpointCollection,
    CommittedCheckpoint,
    checkpoint_artifact,
    ranked_checkpoints,
)
from rayspeed.trainers.tracking import WandbSink, run_wandb_settings
from rayspeed.trainers.wandb_media import figures
from rayspeed.tuning.report import SweepSummary
from rayspeed.tuning.trial import TRIALS_FOLDER

SWEEP_BEST = "sweep-best"


def log_sweep(cfg: ExperimentConfig, storage: RunStorage, summary: SweepSummary, *, mode: str) -> str:
    """Logs the finished sweep; returns where its W&B run is ("" with W&B disabled)."""
    run_id = claimed_wandb_run_id(storage)
    if mode == "disabled" or run_id is None:
        return ""
    best = summary.best or {}
    tracking = cfg.tracking.model_copy(update={"group": cfg.run.name})  # the group its trials log to
    settings = run_wandb_settings(tracking, storage, run_id=run_id, mode=mode,
                                  config=redact(cfg.resolved_dict()), job_type="sweep",
                                  summary={f"best/{key}": value for key, value in best.get("metrics", {}).items()})
    sink = WandbSink(settings)
    sink.start()
    try:
        where = sink.where
        sink.log_media({"sweep/trials": trial_table(summary.trials, metric=cfg.tune.metric),
                        **figures(storage, [SWEEP_VALUES_FILE, SWEEP_CURVES_FILE])}, after_last=True)
        checkpoint = _best_checkpoint(cfg, storage, best)
        if checkpoint is not None and (artifact := checkpoint_artifact(*checkpoint)) is not None:
            sink.log_artifact(artifact, aliases=[SWEEP_BEST])
    finally:
        sink.finish()
    return where


def trial_table(trials: list[dict], *, metric: str):
    """One row per trial: its id, status, values, best metric and epoch, and its last epoch's metrics."""
    import wandb

    records = [{"trial": t["trial"], "status": t["status"], **t["values"], f"best {metric}": t["best"],
                "best epoch": t["best_epoch"],
                **{f"last {key}": value for key, value in (t["history"][-1] if t["history"] else {}).items()
                   if key != "run"}} for t in trials]
    columns = list(dict.fromkeys(key for record in records for key in record))
    return wandb.Table(columns=columns, data=[[record.get(column) for column in columns] for record in records])


def _best_checkpoint(cfg: ExperimentConfig, storage: RunStorage, best: dict
                     ) -> tuple[CommittedCheckpoint, CheckpointCollection] | None:
    """The best trial's best checkpoint, in its run's own checkpoint collection (None when the trial
    logs no checkpoints or kept none)."""
    if not best.get("checkpoint") or cfg.tracking.checkpoint_artifacts == "none":
        return None
    run_name, name = best["checkpoint"].rstrip("/").rsplit("/", 2)[-2:]
    run = storage.nested(TRIALS_FOLDER, run_name)
    run_id, run_summary = claimed_wandb_run_id(run), json.loads(run.read_text(SUMMARY_FILE) or "{}")
    if run_id is None or not run_summary.get("best_metrics"):
        return None
    collection = CheckpointCollection.of(run, run_id=run_id, score_metric=cfg.checkpoint.score_metric)
    return ranked_checkpoints([(run.join(name), run_summary["best_metrics"])], collection)[0], collection
