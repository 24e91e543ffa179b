"""The `k8s` section: how `rayspeed k8s render` turns the experiment into a KubeRay RayJob. Training
ignores it; replicas and per-worker resources come from `scaling`, not from here."""

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from rayspeed import __version__
from rayspeed.config.section import Section

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class Toleration(Section):
    """A pod toleration, as Kubernetes spells it."""

    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self):
        # Kubernetes refuses such a pod only when KubeRay creates it, where the error is an event.
        if self.operator == "Exists" and self.value is not None:
            raise ValueError(f"operator Exists matches any value of {self.key}: remove value, or use Equal")
        if self.operator == "Equal" and self.value is None:
            raise ValueError(f"operator Equal needs the value of {self.key}")
        return self


class K8sConfig(Section):
    """Image, namespace, credentials and pod settings of the rendered RayJob."""

    image: str = f"rayspeed:{__version__}"
    """Image of every pod: k8s/Dockerfile (rayproject/ray 2.60 with rayspeed installed)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the nodes pull the image again (Always for a moving tag such as latest)."""
    namespace: str = Field("default", pattern=DNS_LABEL, max_length=63)
    """Namespace of the RayJob, its ConfigMap and its pods; the Secrets and the volume claim live there too."""
    service_account: str | None = Field(None, pattern=DNS_SUBDOMAIN)
    """An existing service account for the pods (e.g. one bound to a cloud role for object storage);
    KubeRay binds the autoscaler's Role to it. Default: the one KubeRay makes for the Ray cluster."""
    working_dir: str = Field("/home/ray/rayspeed", pattern=r"^/")
    """The project directory inside the image: relative data paths and model modules are found there."""
    wandb_secret: str | None = Field("rayspeed-wandb", pattern=DNS_SUBDOMAIN)
    """Secret whose keys (WANDB_API_KEY, optionally WANDB_BASE_URL, WANDB_ENTITY) become the head's
    environment, where the W&B run lives. Required by the pod when tracking.mode is online; null: none."""
    storage_secret: str | None = Field("rayspeed-storage", pattern=DNS_SUBDOMAIN)
    """Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...) become every
    pod's environment, for object-storage runs and data; null: none (e.g. a cloud role instead)."""
    runs_volume_claim: str = Field("rayspeed-runs", pattern=DNS_SUBDOMAIN)
    """A ReadWriteMany PersistentVolumeClaim that holds runs when run.storage_path is not object
    storage: a pod's own disk is lost with the pod and not seen by the others."""
    runs_mount_path: str = Field("/mnt/rayspeed-runs", pattern=r"^/")
    """Where that volume is mounted in every pod; a local run.storage_path is stored here instead."""
    head_cpus: PositiveFloat = 2
    """CPU of the head pod, which runs the driver and the Train controller but no training (num-cpus 0)."""
    head_memory_gib: PositiveFloat = 8
    """Memory of the head pod (the driver reads the run's metrics; Ray Data's coordinator runs there)."""
    worker_memory_gib: PositiveFloat = 8
    """Memory of each worker pod (one training worker each)."""
    max_worker_replicas: PositiveInt | None = None
    """Ceiling of the in-tree autoscaler, which adds worker pods while Ray has demand the pods cannot
    place (e.g. Ray Data beside training); default: the training workers' pods, no more."""
    queue: str | None = Field(None, pattern=DNS_SUBDOMAIN)
    """Kueue LocalQueue: admits all of the RayJob's pods at once (gang admission) when it has the quota.
    Kueue refuses autoscaling, so a queued RayJob has a fixed number of workers."""
    priority_class: str | None = Field(None, pattern=DNS_SUBDOMAIN)
    """PriorityClass of every pod (who is preempted first when the cluster is full); default: the cluster's."""
    node_selector: dict[str, str] = {}
    """Node labels the worker pods must run on, e.g. {cloud.google.com/gke-accelerator: nvidia-l4}."""
    tolerations: list[Toleration] = []
    """Taints the worker pods tolerate; GPU workers always tolerate nvidia.com/gpu."""
    backoff_limit: NonNegativeInt = 0
    """Retries of the whole RayJob, each on a new Ray cluster; more than 0 needs run.resume: auto."""
    active_deadline_s: PositiveInt = 86_400
    """The RayJob fails after this many seconds, whatever it is doing."""
    ttl_after_finished_s: NonNegativeInt = 600
    """Seconds the finished Ray cluster is kept (for logs) before it is deleted."""
    shutdown_after_finished: bool = True
    """Delete the Ray cluster once the job has finished; false keeps its pods (and their cost)."""

    @model_validator(mode="after")
    def _kueue_admits_it(self):
        """Kueue's webhook refuses a RayJob that autoscales or keeps its cluster after the job."""
        if self.queue and self.max_worker_replicas is not None:
            raise ValueError("k8s.max_worker_replicas: Kueue admits a fixed number of pods; leave it unset with "
                             "k8s.queue")
        if self.queue and not self.shutdown_after_finished:
            raise ValueError("k8s.shutdown_after_finished: Kueue requires true (its quota is freed when the "
                             "cluster goes)")
        return self
