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
    """Worker-group failures tolerated (restarting from the latest checkpoint); -1 is unlimited."""
    resume: Literal["never", "auto", "required"] = "never"
    """never: refuse an existing run name. auto: continue it if it has a checkpoint, else start.
    required: continue it, and fail if there is nothing to continue (what `--resume` sets)."""
