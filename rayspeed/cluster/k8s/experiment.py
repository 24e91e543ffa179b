"""The experiment as the pods of a RayJob read it: run storage every pod shares, and no credentials
in what becomes a ConfigMap (readable by anyone who may read the namespace's ConfigMaps)."""

from pathlib import PurePosixPath

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.load import apply_overrides
from rayspeed.config.redact import refuse_credentials

# Schemes pyarrow reads from the machine's own disk: one pod's, on Kubernetes.
LOCAL_SCHEMES = ("file://", "local://")


def on_object_storage(path: str) -> bool:
    return "://" in path and not path.startswith(LOCAL_SCHEMES)


def as_on_the_cluster(cfg: ExperimentConfig) -> tuple[ExperimentConfig, list[str]]:
    """The experiment with a run storage every pod sees, and notes on what was changed.

    A local `run.storage_path` would be one pod's own disk, lost with the pod and unseen by the
    others: the run goes on the runs volume instead (a path already on it is kept).

    Raises:
        ConfigError: a value carries credentials (they belong in the Secret k8s.storage_secret).
    """
    refuse_credentials(cfg.model_dump(mode="json"), exposed="which would be readable in the ConfigMap; give them "
                       "to the pods from a Secret (k8s.storage_secret, k8s.wandb_secret)")
    storage, mount = cfg.run.storage_path, PurePosixPath(cfg.k8s.runs_mount_path)
    local = PurePosixPath(storage.split("://", 1)[-1])
    if on_object_storage(storage) or local.is_relative_to(mount):
        return cfg, []
    note = (f"run.storage_path {storage!r} would be one pod's own disk: the RayJob stores the run on the "
            f"volume claim {cfg.k8s.runs_volume_claim!r} at {mount} (or set run.storage_path to object "
            "storage, s3://bucket/runs)")
    return apply_overrides(cfg, {"run.storage_path": str(mount)}, source="k8s render"), [note]
