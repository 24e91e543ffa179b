"""The `run` section: the run's identity, where it is stored, and how failures and resumes work."""

from typing import Literal

from pydantic import Field

from rayspeed.config.section import Section


class RunConfig(Section):
    """A run is named storage: `storage_path/name` holds its config, metrics and checkpoints."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128)
    """Run name; also the directory under `storage_path`. Reusing it needs `resume`."""
    storage_path: str = "~/rayspeed_runs"
    """Local directory or URI pyarrow understands (s3://bucket/prefix, gs://..., hdfs://...)."""
    max_failures: int = Field(0, ge=-1)
    """Worker-group failures tolerated (a worker process or its node died, or a rank hung): each one
    restarts every rank from the newest good checkpoint; -1 is unlimited. Nodes Ray knows were
    preempted or drained are retried by Ray without counting here."""
    max_controller_failures: int = Field(3, ge=-1)
    """Failures to start the worker group (resources that never appear) tolerated; -1 retries forever."""
    stop_grace_s: float = Field(120.0, gt=0)
    """After SIGTERM to the driver (`rayspeed jobs stop`, `ray job stop`, a process manager), seconds to
    reach the next step boundary and write a checkpoint there before the run is interrupted without one."""
    hang_timeout_s: float | None = Field(900.0, gt=0)
    """Seconds a rank may make no progress (no optimizer step) before the attempt ends with an error
    naming it, so `max_failures` can retry instead of waiting for the 30-minute collective timeout.
    Must exceed the longest evaluation or checkpoint; null turns the watchdog off."""
    resume: Literal["never", "auto", "required"] = "never"
    """never: refuse an existing run name. auto: continue it if it has a checkpoint, else start.
    required: continue it, and fail if there is nothing to continue (what `--resume` sets)."""
