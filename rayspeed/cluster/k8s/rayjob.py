"""The RayJob (ray.io/v1) and the ConfigMap that `rayspeed k8s render` makes of one experiment.

The RayJob's head runs `python -m rayspeed train|tune` on the experiment file from the ConfigMap,
exactly as on a laptop; worker replicas and resources come from `scaling`, everything about pods
from `k8s`. Pure: neither Ray, torch nor a Kubernetes client is imported.
"""

import re
import shlex
from dataclasses import dataclass
from importlib import metadata
from pathlib import PurePosixPath

import yaml

from rayspeed.cluster.k8s.pods import (
    HEAD_PORTS,
    Mount,
    PodShape,
    autoscaler_options,
    pod_template,
    submitter_template,
    worker_pod_cpus,
)
from rayspeed.config.data import has_uri_scheme
from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.load import apply_overrides
from rayspeed.config.redact import redact_uri
from rayspeed.errors import ConfigError

EXPERIMENT_DIR = "/etc/rayspeed"
EXPERIMENT_FILE = "experiment.yaml"
# KubeRay names the RayCluster and its Services after the RayJob plus a suffix: it refuses longer names.
MAX_JOB_NAME = 47
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RUN_LABEL = "rayspeed.io/run"


@dataclass(frozen=True)
class Rendered:
    """The manifests in apply order, and what rendering changed that the user should know."""

    manifests: list[dict]
    notes: list[str]

    def yaml(self) -> str:
        return manifests_yaml(self.manifests)


class _ManifestDumper(yaml.SafeDumper):
    """Plain YAML as people write manifests: no anchors for repeated parts, files as literal blocks."""

    def ignore_aliases(self, data) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_ManifestDumper.add_representer(str, _string)


def manifests_yaml(manifests: list[dict]) -> str:
    return yaml.dump_all(manifests, Dumper=_ManifestDumper, sort_keys=False)


def job_name(run_name: str) -> str:
    """A DNS-1035 label of at most 47 characters from `run.name` (which also allows `_`, `.`, capitals)."""
    name = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-")
    name = name if name[:1].isalpha() else f"rs-{name}"
    return name[:MAX_JOB_NAME].rstrip("-")


def render_rayjob(cfg: ExperimentConfig, *, verb: str, source: str) -> Rendered:
    """The ConfigMap holding the resolved experiment, then the RayJob that runs `rayspeed <verb>` on it.

    Takes the whole config: the ConfigMap carries every section, the RayJob reads `k8s`, `scaling`,
    `run` and `tracking`.

    Args:
        verb: `train` or `tune`.
        source: the experiment file's name, for the ConfigMap's annotation.

    Raises:
        ConfigError: the experiment carries credentials (they belong in Secrets), or cannot run there.
    """
    cfg, notes = _as_on_the_cluster(cfg)
    name = job_name(cfg.run.name)
    labels = {"app.kubernetes.io/name": "rayspeed", "app.kubernetes.io/component": verb, RUN_LABEL: name}
    experiment = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-experiment", "namespace": cfg.k8s.namespace, "labels": labels,
                     "annotations": {"rayspeed.io/source": source}},
        "data": {EXPERIMENT_FILE: yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)},
    }
    job_labels = {**labels, **({KUEUE_QUEUE_LABEL: cfg.k8s.queue} if cfg.k8s.queue else {})}
    k8s = cfg.k8s
    rayjob = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": job_labels},
        "spec": {
            "entrypoint": f"python -m rayspeed {shlex.join([verb, f'{EXPERIMENT_DIR}/{EXPERIMENT_FILE}'])}",
            "shutdownAfterJobFinishes": k8s.shutdown_after_finished,
            "ttlSecondsAfterFinished": k8s.ttl_after_finished_s,
            "backoffLimit": k8s.backoff_limit,
            "activeDeadlineSeconds": k8s.active_deadline_s,
            "submitterPodTemplate": submitter_template(k8s, labels=labels),
            "rayClusterSpec": _ray_cluster(cfg, config_map=experiment["metadata"]["name"], labels=labels),
        },
    }
    return Rendered(manifests=[experiment, rayjob], notes=notes)


def _as_on_the_cluster(cfg: ExperimentConfig) -> tuple[ExperimentConfig, list[str]]:
    """The experiment as the head pod reads it: relative data paths inside the image's project
    directory, local run storage on the shared runs volume. Refuses credentials in values."""
    leaked = _credential_fields(cfg.model_dump(mode="json"))
    if leaked:
        raise ConfigError([f"{path}: carries credentials, which would be readable in the ConfigMap; put them in "
                           f"the Secret k8s.storage_secret ({cfg.k8s.storage_secret}) instead" for path in leaked])
    changes, notes = {}, []
    if cfg.data.is_local and not PurePosixPath(cfg.data.source).is_absolute():
        changes["data.source"] = str(PurePosixPath(cfg.k8s.working_dir) / cfg.data.source)
    if not has_uri_scheme(cfg.run.storage_path) and cfg.run.storage_path != cfg.k8s.runs_mount_path:
        changes["run.storage_path"] = cfg.k8s.runs_mount_path
        notes.append(f"run.storage_path {cfg.run.storage_path!r} would be one pod's own disk: the RayJob stores "
                     f"the run on the volume claim {cfg.k8s.runs_volume_claim!r} at {cfg.k8s.runs_mount_path} "
                     "(or set run.storage_path to object storage, s3://bucket/runs)")
    return (apply_overrides(cfg, changes, source="k8s render") if changes else cfg), notes


def _credential_fields(value, path: str = "") -> list[str]:
    """Fields whose values are URIs with credentials in them (user:password@, ?secret_key=)."""
    if isinstance(value, dict):
        return [leak for key, item in value.items() for leak in _credential_fields(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [leak for i, item in enumerate(value) for leak in _credential_fields(item, f"{path}[{i}]")]
    return [path.lstrip(".")] if isinstance(value, str) and redact_uri(value) != value else []


def _ray_cluster(cfg: ExperimentConfig, *, config_map: str, labels: dict[str, str]) -> dict:
    k8s, scaling = cfg.k8s, cfg.scaling
    on_volume = not has_uri_scheme(cfg.run.storage_path)
    runs = [Mount("runs", {"persistentVolumeClaim": {"claimName": k8s.runs_volume_claim}}, k8s.runs_mount_path)]
    shared = runs if on_volume else []
    storage = [(k8s.storage_secret, False)] if k8s.storage_secret else []
    wandb = [(k8s.wandb_secret, cfg.tracking.mode == "online")] if k8s.wandb_secret else []
    head = PodShape(
        container="ray-head", cpus=k8s.head_cpus, memory_gib=k8s.head_memory_gib, secrets=[*wandb, *storage],
        mounts=[Mount("experiment", {"configMap": {"name": config_map}}, EXPERIMENT_DIR, read_only=True), *shared],
        ports=HEAD_PORTS)
    worker = PodShape(
        container="ray-worker", memory_gib=k8s.worker_memory_gib, gpus=1 if scaling.use_gpu else 0,
        cpus=worker_pod_cpus(cpus_per_worker=scaling.cpus_per_worker, data_cpus=scaling.data_cpus,
                             num_workers=scaling.num_workers),
        secrets=storage, mounts=shared)
    replicas = scaling.num_workers
    return {
        "rayVersion": _ray_version(),
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": autoscaler_options(),
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0"},  # the driver and controller need none; training lands on workers
            "template": pod_template(head, k8s, labels=labels, workers=False),
        },
        "workerGroupSpecs": [{
            "groupName": "gpu" if scaling.use_gpu else "cpu",
            "replicas": replicas,
            "minReplicas": replicas,
            "maxReplicas": k8s.max_worker_replicas or replicas,
            "rayStartParams": {},
            "template": pod_template(worker, k8s, labels=labels, workers=True),
        }],
    }


def _ray_version() -> str:
    """The Ray of this rayspeed, which the image must match (read without importing Ray)."""
    return metadata.version("ray")
