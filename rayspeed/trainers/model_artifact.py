"""An export (`rayspeed export`) as a W&B `model` artifact in its run's own W&B run: the weights, the
model section, the fitted preprocessing and the input spec; linked into W&B's model registry when
the user names a registry collection."""

import json
from pathlib import Path

from rayspeed.config.tracking import TrackingConfig
from rayspeed.runs.layout import IDENTITY_FILE
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers.tracking import WandbSink, run_wandb_settings

ARTIFACT_TYPE = "model"


def log_export(tracking: TrackingConfig, storage: RunStorage, *, out: Path, source: dict, input_spec: dict,
               mode: str, registry: str | None) -> str:
    """Logs the export in `out`; returns where the W&B run is ("" when the run has no W&B run)."""
    identity = storage.read_text(IDENTITY_FILE)
    if mode == "disabled" or identity is None:
        return ""
    import wandb

    run_id = json.loads(identity)["wandb_run_id"]
    artifact = wandb.Artifact(f"{ARTIFACT_TYPE}-{storage.name}-{run_id}", type=ARTIFACT_TYPE,
                              metadata={**source, "input_spec": input_spec})
    artifact.add_dir(str(out))
    sink = WandbSink(run_wandb_settings(tracking, storage, run_id=run_id, mode=mode, config={}, summary={}))
    sink.start()
    try:
        where = sink.where
        sink.log_artifact(artifact, aliases=[source["checkpoint"]], registry=registry)
    finally:
        sink.finish()
    return where
