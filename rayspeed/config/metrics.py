"""The metrics a run reports at every epoch end, which direction is better, and which task has them.

Checkpoint ranking and sweeps choose among these; they are named here once.
"""

from typing import Literal

EpochMetric = Literal["train_loss", "val_loss", "val_accuracy", "val_f1", "val_rmse", "val_mae", "val_r2",
                      "val_perplexity"]
METRIC_MODES = {"train_loss": "min", "val_loss": "min", "val_accuracy": "max", "val_f1": "max",
                "val_rmse": "min", "val_mae": "min", "val_r2": "max", "val_perplexity": "min"}
# Metrics only one task measures; losses are everyone's.
METRIC_TASKS = {"val_accuracy": "classification", "val_f1": "classification", "val_rmse": "regression",
                "val_mae": "regression", "val_r2": "regression", "val_perplexity": "language_modeling"}


def check_metric(field: str, metric: str | None, *, task: str, val_share: float) -> None:
    """Raises ValueError when `metric` (set in `field`) is never measured by this run."""
    if metric is None:
        return
    if metric.startswith("val_") and val_share == 0:
        raise ValueError(f"{field}: {metric} needs a validation split (data.split.val > 0)")
    needs = METRIC_TASKS.get(metric)
    if needs and needs != task:
        choices = ", ".join(m for m in METRIC_MODES if METRIC_TASKS.get(m, task) == task)
        raise ValueError(f"{field}: {metric} is measured for {needs} only (data.task is {task}); use one of {choices}")
