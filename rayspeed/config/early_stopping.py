"""`train.early_stopping`: end a run once its checkpoint score stops improving."""

from pydantic import Field, PositiveInt

from rayspeed.config.metrics import EpochMetric
from rayspeed.config.section import Section


class EarlyStoppingConfig(Section):
    """Checked at every checkpoint (each epoch end unless `checkpoint.every_n_steps`) on the val split:
    after `patience` checkpoints in a row without an improvement larger than `min_delta`, every rank
    stops at the same step. The run's test metrics and its result are then the best checkpoint's."""

    metric: EpochMetric | None = None
    """The watched metric; default and only choice: `checkpoint.score_metric` (its direction is the
    metric's own), so the checkpoint early stopping keeps is the best one."""
    patience: PositiveInt = 3
    """Checkpoints in a row without improvement before the run stops."""
    min_delta: float = Field(0.0, ge=0)
    """How much better than the best so far a score must be to count as an improvement."""
