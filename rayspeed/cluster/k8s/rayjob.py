"""The RayJob (ray.io/v1) and the ConfigMap that `rayspeed k8s render` makes of one experiment.

The RayJob's head runs `python -m rayspeed train|tune` on the experiment file from the ConfigMap,
exactly as on a laptop; worker replicas and resources come from `scaling`, everything about pods
from `k8s`. Pure: neither Ray, torch nor a Kubernetes client is imported.
"""

import re
import shlex
from dataclasses import dataclass
from importlib import metadata

import yaml

from rayspeed.cluster.k8s.experiment import as_on_the_cluster, on_object_storage
from rayspeed.cluster.k8s.pods import (
    HEAD_PORTS,
    Mount,
    PodShape,
    autoscaler_options,
    pod_template,
    submitter_template,
    worker_pod_cpus,
)
from rayspeed.config.experiment import ExperimentConfig
from rayspeed.errors import ConfigError

EXPERIMENT_DIR = "/etc/rayspeed"
EXPERIMENT_FILE = "experiment.yaml"
# KubeRay names the RayCluster and its Services after the RayJob plus a suffix: it refuses longer names.
MAX_JOB_NAME = 47
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RUN_LABEL = "rayspeed.io/run"
# The Ray node label KubeRay sets from a pod's worker group (what scaling.*_node_labels can name).
NODE_GROUP_LABEL = "ray.io/node-group"


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
    `run`, `tracking` and `tune`.

    Args:
        verb: `train` or `tune`.
        source: the experiment file's name, for the ConfigMap's annotation.

    Raises:
        ConfigError: the experiment carries credentials (they belong in Secrets), or cannot run there.
    """
    cfg, notes = as_on_the_cluster(cfg)
    k8s, name = cfg.k8s, job_name(cfg.run.name)
    labels = {"app.kubernetes.io/name": "rayspeed", "app.kubernetes.io/component": verb, RUN_LABEL: name}
    experiment = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-experiment", "namespace": k8s.namespace, "labels": labels,
                     "annotations": {"rayspeed.io/source": source}},
        "data": {EXPERIMENT_FILE: yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)},
    }
    # The job's shell starts in the image's project directory, as `rayspeed` would on a laptop: relative
    # data and tokenizer paths and the model's module are found there.
    command = shlex.join(["python", "-m", "rayspeed", verb, f"{EXPERIMENT_DIR}/{EXPERIMENT_FILE}"])
    rayjob = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": k8s.namespace,
                     "labels": {**labels, **({KUEUE_QUEUE_LABEL: k8s.queue} if k8s.queue else {})}},
        "spec": {
            "entrypoint": f"cd {shlex.quote(k8s.working_dir)} && {command}",
            "shutdownAfterJobFinishes": k8s.shutdown_after_finished,
            # KubeRay refuses a TTL on a cluster that is kept.
            "ttlSecondsAfterFinished": k8s.ttl_after_finished_s if k8s.shutdown_after_finished else 0,
            "backoffLimit": k8s.backoff_limit,
            "activeDeadlineSeconds": k8s.active_deadline_s,
            "submitterPodTemplate": submitter_template(k8s, labels=labels),
            "rayClusterSpec": _ray_cluster(cfg, sweep=verb == "tune", config_map=experiment["metadata"]["name"],
                                           labels=labels),
        },
    }
    return Rendered(manifests=[experiment, rayjob], notes=notes)


def _ray_cluster(cfg: ExperimentConfig, *, sweep: bool, config_map: str, labels: dict[str, str]) -> dict:
    """One worker pod per training worker of every trial running at once (`tune.max_concurrent_trials`,
    default 1). Besides its worker, a pod holds its share of the CPUs Ray Data needs and, in a sweep,
    of the trial's own actor: the head has no CPUs for them."""
    k8s, scaling = cfg.k8s, cfg.scaling
    trials = (cfg.tune.max_concurrent_trials or 1) if sweep else 1
    group = "gpu" if scaling.use_gpu else "cpu"
    for field in ("data_node_labels", "worker_node_labels"):
        _check_node_labels(field, getattr(scaling, field), group=group)
    shared = [] if on_object_storage(cfg.run.storage_path) else [
        Mount("runs", {"persistentVolumeClaim": {"claimName": k8s.runs_volume_claim}}, k8s.runs_mount_path)]
    storage = [(k8s.storage_secret, False)] if k8s.storage_secret else []
    wandb = [(k8s.wandb_secret, cfg.tracking.mode == "online")] if k8s.wandb_secret else []
    head = PodShape(
        container="ray-head", cpus=k8s.head_cpus, memory_gib=k8s.head_memory_gib, secrets=[*wandb, *storage],
        mounts=[Mount("experiment", {"configMap": {"name": config_map}}, EXPERIMENT_DIR, read_only=True), *shared],
        ports=HEAD_PORTS)
    beside = scaling.trial_cpus - scaling.training_cpus if sweep else scaling.data_cpus
    worker = PodShape(
        container="ray-worker", memory_gib=k8s.worker_memory_gib, gpus=1 if scaling.use_gpu else 0,
        cpus=worker_pod_cpus(cpus_per_worker=scaling.cpus_per_worker, beside=beside, num_workers=scaling.num_workers),
        secrets=storage, mounts=shared)
    replicas = scaling.num_workers * trials
    autoscaling = not k8s.queue  # Kueue admits fixed clusters only
    return {
        "rayVersion": _ray_version(),
        "enableInTreeAutoscaling": autoscaling,
        **({"autoscalerOptions": autoscaler_options()} if autoscaling else {}),
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0"},  # the driver and controller need none; training lands on workers
            "template": pod_template(head, k8s, labels=labels, workers=False),
        },
        "workerGroupSpecs": [{
            "groupName": group,
            "replicas": replicas,
            "minReplicas": replicas,
            "maxReplicas": max(replicas, k8s.max_worker_replicas or replicas),
            "rayStartParams": {},
            "template": pod_template(worker, k8s, labels=labels, workers=True),
        }],
    }


def _check_node_labels(field: str, labels: dict[str, str], *, group: str) -> None:
    """Data tasks or workers pinned to node labels no pod carries would wait forever."""
    if labels and labels != {NODE_GROUP_LABEL: group}:
        raise ConfigError(f"scaling.{field}: no pod of the rendered RayJob carries {labels}: its one "
                          f"worker group labels its Ray nodes {{{NODE_GROUP_LABEL}: {group}}}; use that or leave "
                          "it empty")


def _ray_version() -> str:
    """The Ray of this rayspeed, which the image must match (read without importing Ray)."""
    return metadata.version("ray")
