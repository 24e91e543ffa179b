"""The per-worker training loop run by Ray Train: restore -> step -> report/validate/checkpoint -> test.

Every decision to report, validate or checkpoint depends only on the step number, so all ranks
make the same collective calls in the same order (reports, all-reduces and saves are barriers).
"""

import time

import ray.train
import ray.train.torch
import torch
import torch.nn.functional as F

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.trainers.checkpointing import restore, save_and_report
from rayspeed.trainers.engine import INPUT_DTYPES, build_engine
from rayspeed.trainers.evaluation import evaluate
from rayspeed.trainers.meter import WindowMeter
from rayspeed.trainers.models import build_model
from rayspeed.trainers.plan import LoopPlan

SHUFFLE_BUFFER_BATCHES = 8


def train_loop_per_worker(loop_config: dict) -> None:
    cfg: ExperimentConfig = loop_config["experiment"]
    plan: LoopPlan = loop_config["plan"]
    worker = Worker(cfg, plan)
    step = worker.restore()
    shard = ray.train.get_dataset_shard("train")
    micro, accum = cfg.batch.micro_batch_per_worker, cfg.batch.grad_accumulation
    for epoch in range(step // plan.steps_per_epoch, plan.num_epochs):
        first = step - epoch * plan.steps_per_epoch  # steps of this epoch done before a resume
        # One fetched batch holds one optimizer step's rows for this rank: fewer, larger conversions
        # from Ray Data than one per micro batch.
        batches = shard.iter_torch_batches(
            batch_size=micro * accum, drop_last=True, device=worker.device,
            local_shuffle_buffer_size=micro * accum * SHUFFLE_BUFFER_BATCHES,
            local_shuffle_seed=cfg.train.seed + epoch * worker.world + worker.rank)
        for index, (wait_s, batch) in enumerate(_timed(batches)):
            # Skipped batches are still read: streaming_split feeds all ranks in lockstep.
            if index < first or index >= plan.steps_per_epoch or step >= plan.total_steps:
                continue
            for micro_batch in _split(batch, micro):
                worker.train_micro_step(micro_batch, wait_s=wait_s / accum)
            step += 1
            worker.after_step(step)


def _split(batch: dict, size: int):
    """Micro batches of `size` rows; DeepSpeed steps the optimizer after the last of them."""
    columns = {name: torch.split(values, size) for name, values in batch.items()}
    for parts in zip(*columns.values(), strict=True):
        yield dict(zip(columns, parts, strict=True))


class Worker:
    """One rank's engine and the report/validate/checkpoint policy around it."""

    def __init__(self, cfg: ExperimentConfig, plan: LoopPlan):
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        self.dtype = INPUT_DTYPES[cfg.train.precision]
        self.cfg, self.plan = cfg, plan
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        model = build_model(cfg.model, num_features=plan.num_features, num_classes=plan.num_classes)
        self.engine = build_engine(model, ds_config=plan.ds_config)
        self.meter = WindowMeter(self.device)
        self.rows: list[dict] = []  # rows logged since the last checkpoint

    def restore(self) -> int:
        return restore(self.engine, rank=self.rank)

    def train_micro_step(self, batch: dict, *, wait_s: float) -> None:
        logits = self.engine(batch["features"].to(self.dtype))
        loss = F.cross_entropy(logits.float(), batch["label"])
        self.engine.backward(loss)  # DeepSpeed divides by the accumulation steps
        self.engine.step()  # steps the optimizer and LR schedule only at accumulation boundaries
        self.meter.add_micro(loss, rows=batch["label"].numel(), wait_s=wait_s)

    def after_step(self, step: int) -> None:
        """Logs a row every `log_every_n_steps`; reports (a barrier) only at epoch ends, checkpoints and the
        end. Each report carries every row since the last checkpoint, so a checkpoint and the metrics it
        covers are persisted together."""
        self.meter.add_step()
        plan = self.plan
        final = step == plan.total_steps
        checkpoint = final or step % plan.checkpoint_every == 0
        report = checkpoint or step % plan.steps_per_epoch == 0
        if not (report or step % self.cfg.tracking.log_every_n_steps == 0):
            return
        row = {"step": step, "epoch": round(step / plan.steps_per_epoch, 4), "lr": self.engine.get_lr()[0],
               **self.meter.reduce(world=self.world)}
        self.rows.append(row)
        if report:
            if plan.has_val:
                row.update(self._evaluate("val"))
            if final:
                row["done"] = True
                if plan.has_test:
                    row.update(self._evaluate("test", with_confusion=True))
            metrics = {**row, "rows": list(self.rows)}
            if checkpoint:
                save_and_report(self.engine, metrics, step=step, rank=self.rank)
                self.rows = []
            else:
                ray.train.report(metrics)
        self.meter.restart()

    def _evaluate(self, split: str, *, with_confusion: bool = False) -> dict:
        result = evaluate(self.engine, ray.train.get_dataset_shard(split), rank=self.rank, world=self.world,
                          num_classes=self.plan.num_classes, device=self.device, dtype=self.dtype)
        metrics = {f"{split}_loss": result.loss, f"{split}_accuracy": result.accuracy}
        if with_confusion:
            metrics[f"{split}_confusion"] = result.confusion
        return metrics


def _timed(batches):
    """Yields (seconds spent waiting for the batch, batch)."""
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield time.perf_counter() - started, batch
