"""An export (`rayspeed export`) as a W&B `model` artifact in its run's own W&B run: the weights, the
model section, the fitted preprocessing and the input spec; linked into W&B's model registry when
the user names a registry collection."""

from pathlib import Path

from rayspeed.config.tracking import TrackingConfig
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers.tracking import results_run

ARTIFACT_TYPE = "model"


def log_export(tracking: TrackingConfig, storage: RunStorage, *, out: Path, source: dict, input_spec: dict,
               mode: str, registry: str | None) -> str:
    """Logs the export in `out`; returns where the W&B run is ("" when the run has no W&B run)."""
    with results_run(tracking, storage, mode=mode) as run:
        if run is None:
            return ""
        import wandb

        artifact = wandb.Artifact(f"{ARTIFACT_TYPE}-{storage.name}-{run.run_id}", type=ARTIFACT_TYPE,
                                  metadata={**source, "input_spec": input_spec})
        for path in sorted(out.iterdir()):  # file by file: add_dir would print a line of its own
            artifact.add_file(str(path))
        run.log_artifact(artifact, aliases=[source["checkpoint"]], registry=registry)
        return run.where
