"""The `scaling` section: how many workers and what each one gets."""

from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from rayspeed.config.section import Section

# What a sweep trial's own actor holds beside its workers: data preparation, the run's recorder and W&B.
TRIAL_DRIVER_CPUS = 1.0


class ScalingConfig(Section):
    """Training workers and their resources, plus the CPUs kept free for the Ray Data pipeline."""

    num_workers: PositiveInt = 2
    """Data-parallel training workers (one DeepSpeed rank each)."""
    use_gpu: bool = False
    """One GPU per worker with NCCL; otherwise CPU workers with gloo."""
    cpus_per_worker: float = Field(1.0, gt=0)
    """Logical CPUs reserved per worker; also sets its OMP_NUM_THREADS."""
    gpus_per_worker: float = Field(1.0, gt=0)
    """GPUs per worker when `use_gpu` is true; must be 1: a DeepSpeed rank drives exactly one GPU."""
    data_cpus: float = Field(1.0, ge=1)
    """Logical CPUs that must stay free for Ray Data's tasks; without them the input pipeline hangs."""
    data_max_cpus: float | None = Field(None, ge=1)
    """At most this many CPUs for Ray Data's tasks at once (reading, statistics, encoding,
    augmentation); default: whatever is free."""
    worker_node_labels: dict[str, str] = {}
    """Ray node labels every training worker must run on, e.g. `{ray.io/node-group: gpu}`; a restarted
    worker group is placed on any node that has them (spare nodes replace a lost one)."""
    data_node_labels: dict[str, str] = {}
    """Ray node labels every Ray Data task must run on, e.g. `{ray.io/node-group: cpu}` (KubeRay
    labels each worker group's nodes), so preprocessing stays off the GPU nodes, which only train."""

    @field_validator("gpus_per_worker")
    @classmethod
    def _one_gpu_per_rank(cls, gpus: float, info: ValidationInfo) -> float:
        # DeepSpeed picks the device from LOCAL_RANK while Ray assigns GPUs per worker: with 2 GPUs per
        # worker, or 2 workers sharing one, the model and the batches would sit on different devices.
        if info.data.get("use_gpu") and gpus != 1:
            raise ValueError("must be 1: each DeepSpeed rank drives exactly one GPU; use more workers for more GPUs")
        return gpus

    @property
    def training_cpus(self) -> float:
        return self.num_workers * self.cpus_per_worker

    @property
    def trial_cpus(self) -> float:
        """CPUs one sweep trial holds: its driver actor, its workers and Ray Data's."""
        return TRIAL_DRIVER_CPUS + self.training_cpus + self.data_cpus
