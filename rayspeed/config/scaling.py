"""The `scaling` section: how many workers and what each one gets."""

from pydantic import Field, PositiveInt

from rayspeed.config.section import Section


class ScalingConfig(Section):
    """Training workers and their resources, plus the CPUs kept free for the Ray Data pipeline."""

    num_workers: PositiveInt = 2
    """Data-parallel training workers (one DeepSpeed rank each)."""
    use_gpu: bool = False
    """One GPU per worker with NCCL; otherwise CPU workers with gloo."""
    cpus_per_worker: float = Field(1.0, gt=0)
    """Logical CPUs reserved per worker; also sets its OMP_NUM_THREADS."""
    gpus_per_worker: float = Field(1.0, gt=0)
    """GPUs reserved per worker when `use_gpu` is true."""
    data_cpus: float = Field(1.0, ge=1)
    """Logical CPUs that must stay free for Ray Data's tasks; without them the input pipeline hangs."""

    @property
    def training_cpus(self) -> float:
        return self.num_workers * self.cpus_per_worker
