"""The `checkpoint` section: when to save and which checkpoints to keep."""

from typing import Literal

from pydantic import Field, PositiveInt

from rayspeed.config.metrics import EpochMetric
from rayspeed.config.section import Section


class CheckpointConfig(Section):
    """Checkpoint cadence and retention. A checkpoint is always written at the end of the run."""

    every_n_steps: PositiveInt | None = None
    """Save every N optimizer steps; null saves at the end of every epoch."""
    keep: PositiveInt | None = Field(2)
    """Checkpoints kept in storage (the best by `score_metric`, else the newest); null keeps all."""
    score_metric: EpochMetric | None = "val_loss"
    """Metric that ranks checkpoints for `keep` and picks the best one."""
    score_mode: Literal["min", "max"] = "min"
    """Whether a lower (min) or higher (max) score is better."""
