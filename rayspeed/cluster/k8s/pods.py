"""Pod templates of a rendered Ray cluster: image, resources (requests equal limits), a non-root
security context, credentials from Secrets, and volumes. Plain dicts: no Kubernetes client here."""

import math
from dataclasses import dataclass, field

from rayspeed.config.k8s import K8sConfig

# The `ray` user and `users` group of the rayproject/ray images the Dockerfile builds on.
RAY_UID, USERS_GID = 1000, 100
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": RAY_UID, "runAsGroup": USERS_GID, "fsGroup": USERS_GID,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
HEAD_PORTS = [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"},
              {"containerPort": 10001, "name": "client"}]
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Mount:
    """A volume and where the Ray container sees it."""

    name: str
    source: dict
    path: str
    read_only: bool = False

    def volume(self) -> dict:
        return {"name": self.name, **self.source}

    def mount(self) -> dict:
        return {"name": self.name, "mountPath": self.path, **({"readOnly": True} if self.read_only else {})}


@dataclass(frozen=True)
class PodShape:
    """What one kind of Ray pod gets: its container, resources, credentials and volumes."""

    container: str
    cpus: float
    memory_gib: float
    gpus: int = 0
    secrets: list[tuple[str, bool]] = field(default_factory=list)
    """(Secret name, required) pairs whose keys become the container's environment."""
    mounts: list[Mount] = field(default_factory=list)
    ports: list[dict] = field(default_factory=list)


def resources(*, cpus: float, memory_gib: float, gpus: int = 0) -> dict:
    """Requests equal to limits: Guaranteed QoS, and KubeRay derives Ray's num-cpus/num-gpus from limits."""
    amounts = {"cpu": f"{cpus:g}", "memory": f"{memory_gib:g}Gi", **({GPU_RESOURCE: str(gpus)} if gpus else {})}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def worker_pod_cpus(*, cpus_per_worker: float, beside: float, num_workers: int) -> int:
    """One training worker per pod, plus its share of the CPUs needed `beside` the workers."""
    return math.ceil(cpus_per_worker + beside / num_workers)


def pod_template(shape: PodShape, k8s: K8sConfig, *, labels: dict[str, str], workers: bool) -> dict:
    """The template of a head (workers=False) or worker pod."""
    # Ray's object store lives in /dev/shm, a container's own is 64 MiB; what it holds counts against
    # the container's memory limit.
    mounts = [Mount("dev-shm", {"emptyDir": {"medium": "Memory"}}, "/dev/shm"), *shape.mounts]
    container = {
        "name": shape.container,
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        # Model modules of the project directory import on every pod, as `python -m` allows locally.
        "env": [{"name": "PYTHONPATH", "value": k8s.working_dir}],
        **({"envFrom": [{"secretRef": {"name": name, "optional": not required}}
                        for name, required in shape.secrets]} if shape.secrets else {}),
        **({"ports": shape.ports} if shape.ports else {}),
        "resources": resources(cpus=shape.cpus, memory_gib=shape.memory_gib, gpus=shape.gpus),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [mount.mount() for mount in mounts],
    }
    spec = {
        **({"serviceAccountName": k8s.service_account} if k8s.service_account else {}),
        **({"priorityClassName": k8s.priority_class} if k8s.priority_class else {}),
        "securityContext": POD_SECURITY,
        "containers": [container],
        "volumes": [mount.volume() for mount in mounts],
    }
    if workers:
        tolerations = [toleration.model_dump(exclude_none=True) for toleration in k8s.tolerations]
        if shape.gpus and not any(toleration["key"] == GPU_RESOURCE for toleration in tolerations):
            tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
        spec.update({**({"nodeSelector": dict(k8s.node_selector)} if k8s.node_selector else {}),
                     **({"tolerations": tolerations} if tolerations else {})})
    return {"metadata": {"labels": labels}, "spec": spec}


def submitter_template(k8s: K8sConfig, *, labels: dict[str, str]) -> dict:
    """The pod that runs `ray job submit` (KubeRay fills in its command): small, and as locked down."""
    container = {"name": "ray-job-submitter", "image": k8s.image, "imagePullPolicy": k8s.image_pull_policy,
                 "resources": resources(cpus=0.5, memory_gib=1), "securityContext": CONTAINER_SECURITY}
    spec = {**({"serviceAccountName": k8s.service_account} if k8s.service_account else {}),
            "restartPolicy": "Never", "securityContext": POD_SECURITY, "containers": [container]}
    return {"metadata": {"labels": labels}, "spec": spec}


def autoscaler_options() -> dict:
    """KubeRay's autoscaler sidecar (v2), with resources and security like every other container."""
    return {"version": "v2", "upscalingMode": "Default", "idleTimeoutSeconds": 60,
            "resources": resources(cpus=0.5, memory_gib=0.5), "securityContext": CONTAINER_SECURITY}
