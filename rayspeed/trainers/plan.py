"""How many steps, epochs and reports a run has: decided once in the driver from the config and data."""

import math
from dataclasses import dataclass

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.errors import DataError
from rayspeed.trainers.schedule import LrPlan


@dataclass(frozen=True)
class LoopPlan:
    """Everything the worker loop needs beyond the config, derived from the data sizes."""

    steps_per_epoch: int
    total_steps: int
    checkpoint_every: int
    log_every: int
    has_val: bool
    has_test: bool
    ds_config: dict
    lr_plan: LrPlan

    @property
    def num_epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def is_epoch_end(self, step: int) -> bool:
        return step > 0 and (step % self.steps_per_epoch == 0 or step == self.total_steps)

    def is_checkpoint(self, step: int) -> bool:
        return step > 0 and (step % self.checkpoint_every == 0 or step == self.total_steps)

    def is_logged(self, step: int) -> bool:
        """Whether the step has a row in metrics.jsonl (a stop on request adds the step it stopped at)."""
        return step > 0 and (step % self.log_every == 0 or self.is_epoch_end(step) or self.is_checkpoint(step))


def plan_loop(cfg: ExperimentConfig, *, split_rows: dict[str, int]) -> LoopPlan:
    """Steps per epoch count only full global batches: each worker gets train_rows // workers rows
    (Ray's equal streaming split) and the tail that does not fill a global batch is skipped.

    Raises:
        DataError: when the training split cannot fill a single global batch.
    """
    batch = cfg.batch
    rows_per_worker = split_rows["train"] // cfg.scaling.num_workers
    steps_per_epoch = rows_per_worker // batch.micro_batch_per_worker // batch.grad_accumulation
    if steps_per_epoch == 0:
        raise DataError(
            f"the training split has {split_rows['train']} rows, fewer than one global batch "
            f"(train.global_batch = {batch.global_batch}); lower train.global_batch or add data"
        )
    total = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    if cfg.checkpoint.score_metric and cfg.checkpoint.score_metric.startswith("val_") and not split_rows["val"]:
        raise DataError(f"checkpoint.score_metric is {cfg.checkpoint.score_metric} but the val split is empty")
    return LoopPlan(
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        checkpoint_every=cfg.checkpoint.every_n_steps or steps_per_epoch,
        log_every=cfg.tracking.log_every_n_steps,
        has_val=split_rows["val"] > 0,
        has_test=split_rows["test"] > 0,
        ds_config=cfg.deepspeed_config(),
        lr_plan=LrPlan.from_config(cfg.train, total_steps=total),
    )
