"""The per-worker training loop run by Ray Train: restore -> step -> log/validate/checkpoint -> test.

Every decision to log, report, validate or checkpoint depends only on the step number, so all ranks
make the same collective calls in the same order (reports, all-reduces and saves are barriers).
"""

import logging
import sys

import ray.train
import torch
from ray.train.v2._internal.execution import context as train_context

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.datasets.tokenizing import Tokenizer
from rayspeed.errors import ContinuityError
from rayspeed.runs.layout import PREPROCESSING_FILE, checkpoint_dir_name
from rayspeed.trainers.batch_stream import BatchStream
from rayspeed.trainers.checkpointing import load_weights, report_checkpoint, restore, saved_checkpoint, seed_rank
from rayspeed.trainers.early_stopping import EarlyStopper, all_agree_to_stop
from rayspeed.trainers.engine import INPUT_DTYPES, average_buffers, build_engine, set_hyperparameters
from rayspeed.trainers.evaluation import EVAL_ROWS, evaluate
from rayspeed.trainers.gate import STOP, EpochGate
from rayspeed.trainers.meter import WindowMeter
from rayspeed.trainers.models import build_model
from rayspeed.trainers.plan import LoopPlan
from rayspeed.trainers.recorder import NullChannel
from rayspeed.trainers.regularization import l1_penalty, penalized_weights, training_objective
from rayspeed.trainers.run_control import StepControl
from rayspeed.trainers.samples import continuations, first_prompts
from rayspeed.trainers.tasks import task_for
from rayspeed.trainers.transfer import adopt


def train_loop_per_worker(loop_config: dict) -> None:
    # Ray Train logs every report, with all its metrics, at INFO under a logger named after its file
    # (so LoggingConfig cannot reach it; ../shared/NOTES-ray-2.60.md section 11).
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    cfg: ExperimentConfig = loop_config["experiment"]
    plan: LoopPlan = loop_config["plan"]
    # A run without a checkpoint starts at epoch 0: its stream opens before DeepSpeed initializes, so
    # the first batches (a new Ray Data execution, seconds on a busy machine) arrive meanwhile.
    fresh = ray.train.get_checkpoint() is None and loop_config["warm_start"] is None
    stream = _batch_stream(cfg, first_epoch=0, epochs=plan.num_epochs) if fresh else None
    try:
        worker = Worker(cfg, plan, loop_config["input_spec"], channel=loop_config["channel"],
                        artifacts=loop_config["artifacts"], gate=loop_config["gate"],
                        checkpoints=loop_config["checkpoints"], control=loop_config["control"],
                        initial_weights=loop_config["initial_weights"])
        step = worker.restore(loop_config["warm_start"])
        if worker.stopped_early:  # a resumed run that had already stopped
            return
        if step == 0 and cfg.model.init_from and plan.has_val:
            worker.evaluate_before_training()
        stream = stream or _batch_stream(cfg, first_epoch=step // plan.steps_per_epoch, epochs=plan.num_epochs)
        try:
            _train_epochs(worker, step, stream)
        finally:
            worker.control.leave(rank=worker.rank)  # the watchdog stops watching this rank
    finally:
        if stream is not None:
            stream.close()


def _batch_stream(cfg: ExperimentConfig, *, first_epoch: int, epochs: int) -> BatchStream:
    """This rank's train shard from `first_epoch` on, as CPU tensors (pinned for a GPU, so the copy
    overlaps the step). One batch holds one optimizer step's rows: fewer, larger conversions from Ray
    Data than one per micro batch."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    shard = ray.train.get_dataset_shard("train")
    rows = cfg.batch.micro_batch_per_worker * cfg.batch.grad_accumulation

    def open_epoch(epoch: int):
        return shard.iter_torch_batches(batch_size=rows, drop_last=True, device="cpu", pin_memory=cfg.scaling.use_gpu,
                                        local_shuffle_buffer_size=max(cfg.data.shuffle_buffer_rows, rows),
                                        local_shuffle_seed=cfg.train.seed + epoch * world + rank)

    return BatchStream(open_epoch, range(first_epoch, epochs))


def _train_epochs(worker: "Worker", step: int, stream: BatchStream) -> None:
    plan, micro = worker.plan, worker.cfg.batch.micro_batch_per_worker
    on_host = worker.device.type == "cpu"
    for epoch in range(step // plan.steps_per_epoch, plan.num_epochs):
        first = step - epoch * plan.steps_per_epoch  # steps of this epoch done before a resume
        for index, (wait_s, batch) in enumerate(stream.next_epoch()):
            # Skipped batches are still read: streaming_split feeds all ranks in lockstep.
            if index < first or index >= plan.steps_per_epoch or step >= plan.total_steps:
                continue
            worker.control.batch_ready(step + 1, rank=worker.rank)
            if not on_host:
                batch = {name: values.to(worker.device, non_blocking=True) for name, values in batch.items()}
            for micro_batch in _split(batch, micro):
                worker.train_micro_step(micro_batch, wait_s=wait_s / worker.cfg.batch.grad_accumulation)
            step += 1
            if worker.after_step(step) == STOP:
                return
            if step == plan.total_steps:  # the rest of the epoch is only read, without steps to watch
                worker.control.leave(rank=worker.rank)


def _split(batch: dict, size: int):
    """Micro batches of `size` rows; DeepSpeed steps the optimizer after the last of them."""
    columns = {name: torch.split(values, size) for name, values in batch.items()}
    for parts in zip(*columns.values(), strict=True):
        yield dict(zip(columns, parts, strict=True))


class Worker:
    """One rank's engine and the log/report/validate/checkpoint policy around it."""

    def __init__(self, cfg: ExperimentConfig, plan: LoopPlan, spec: InputSpec, *, channel, artifacts: dict,
                 gate: EpochGate | None, checkpoints: tuple, control: StepControl,
                 initial_weights: list[ray.ObjectRef] | None):
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.dtype = INPUT_DTYPES[cfg.train.precision]
        self.cfg, self.plan = cfg, plan
        self.task = task_for(spec, label_smoothing=cfg.train.label_smoothing)
        # Each rank runs its share of an evaluation batch: a language model's, one micro batch.
        self.eval_rows = (cfg.batch.micro_batch_per_worker * self.world if spec.task == "language_modeling"
                          else EVAL_ROWS)
        self.channel = channel
        self.rows_out = channel if self.rank == 0 else NullChannel()  # rank 0's rows (and checkpoints) speak for all
        self.artifacts = artifacts
        self.gate = gate  # a Tune trial's: wait for Tune's decision at every epoch end
        self.checkpoints = checkpoints  # (filesystem, the run directory Ray writes checkpoints into)
        self.control = control  # a stop request (SIGTERM to the driver) and the hang watchdog's heartbeat
        stopping, score = cfg.train.early_stopping, cfg.checkpoint
        self.stopper = EarlyStopper.of(stopping, metric=score.score_metric, mode=score.score_mode) if stopping else None
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        model = build_model(cfg.model, spec)
        if cfg.model.init_from:  # before DeepSpeed partitions the weights (ZeRO-3); a restore replaces them
            adopt(model, ray.get(initial_weights[0]) if initial_weights else None, freeze=cfg.model.freeze)
        self.engine = build_engine(model, ds_config=plan.ds_config, lr_plan=plan.lr_plan, peak_lr=cfg.train.lr)
        # Batches go where DeepSpeed put the model (its device comes from LOCAL_RANK).
        self.device = self.engine.device
        self.l1_weights = penalized_weights(self.engine.module) if cfg.train.l1 else []
        seed_rank(cfg.train.seed, self.rank)  # different dropout masks on every rank
        self.meter = WindowMeter(self.device)
        self.rows: list[dict] = []  # rows logged since the last checkpoint
        self.restored_step: int | None = None
        text = Preprocessing.from_dict(artifacts[PREPROCESSING_FILE]).text
        self.tokenizer = Tokenizer(text) if spec.task == "language_modeling" else None  # for its samples
        self.context = spec.num_features - 1
        self.prompts: torch.Tensor | None = None

    def evaluate_before_training(self) -> None:
        """Step 0's row: the validation score of the weights `model.init_from` gave (collective)."""
        self._send({"step": 0, "epoch": 0.0, **self._evaluate("val")})

    def restore(self, warm_start) -> int:
        state, warm = restore(self.engine, rank=self.rank, warm_start=warm_start)
        if warm:  # the other run's optimizer state carries its hyperparameters; this run's apply
            set_hyperparameters(self.engine.optimizer, self.cfg.train)
        if self.stopper:
            self.stopper.load(state)
        self.restored_step = state["step"] or None
        self.control.attempt = state["step"]
        return state["step"]

    @property
    def stopped_early(self) -> bool:
        return bool(self.stopper and self.stopper.stopped)

    def train_micro_step(self, batch: dict, *, wait_s: float) -> None:
        outputs = self.engine(*self.task.inputs(batch, dtype=self.dtype))
        loss = self.task.loss(outputs, batch)  # the data term, which train_loss reports
        # DeepSpeed divides by the accumulation steps.
        self.engine.backward(training_objective(loss, l1=self.cfg.train.l1, weights=self.l1_weights))
        self.engine.step()  # steps the optimizer and the lr schedule only at accumulation boundaries
        self.meter.add_micro(loss, rows=len(batch["row_hash"]), wait_s=wait_s)

    def after_step(self, step: int) -> str | None:
        """Logs a row every `log_every_n_steps` and sends it to the driver at once (rank 0); reports
        (a barrier) only at epoch ends, checkpoints and the end. Each report carries every row since
        the last checkpoint, so the checkpoint alone can restore the metrics it covers.

        A stop on request (SIGTERM to the driver) makes this step a checkpoint, without validation
        (the grace period is short) and ranked last for `checkpoint.keep`: early stopping never saw it.

        Returns:
            STOP when the run ends here: stopped early, on request, or by Tune at this epoch end.
        """
        self.meter.add_step()
        self._tell_restart(step)
        plan = self.plan
        requested = self.control.stop_after(step) and step < plan.total_steps
        checkpoint, report = plan.is_checkpoint(step) or requested, plan.is_epoch_end(step)
        if not (checkpoint or plan.is_logged(step)):
            return
        row = {"step": step, "epoch": round(step / plan.steps_per_epoch, 4),
               "lr": self.engine.lr_scheduler.lr_of_step(step), **self.meter.reduce(world=self.world)}
        row.update(self.task.window_metrics(row))
        if self.l1_weights:
            with torch.no_grad():
                row["l1_term"] = self.cfg.train.l1 * l1_penalty(self.l1_weights).item()
        stop = False
        if report or checkpoint:
            average_buffers(self.engine.module, world=self.world)
            if plan.has_val and (report or plan.is_checkpoint(step)):
                row.update(self._evaluate("val"))
            if plan.has_val and report and self.tokenizer:
                row["samples"] = self._samples()
            if plan.is_checkpoint(step) and self.stopper and plan.has_val:
                stop = all_agree_to_stop(self.stopper.update(row[self.stopper.metric], step=step), device=self.device)
                self.stopper.stopped = stop
            if step == plan.total_steps and not self.stopper:
                row["done"] = True
                if plan.has_test:
                    row.update(self._evaluate("test", with_details=True))
        if requested:
            row["stop_requested"] = True
        if checkpoint:
            state = self.stopper.state() if self.stopper else {}
            with saved_checkpoint(self.engine, step=step, rank=self.rank, world=self.world, state=state,
                                  artifacts=self.artifacts) as saved:
                if self.stopper and (stop or step == plan.total_steps):
                    row.update(self._finish_with_best(step, stopped=stop))
                self._send(row)
                self.rows_out.flush()
                ranked = self._unranked(row) if requested and not plan.is_checkpoint(step) else row
                kept = report_checkpoint({**ranked, "rows": list(self.rows)}, saved, step=step)
                self.rows_out.send_checkpoints(kept)
            self.rows = []
        else:
            self._send(row)
            if report:
                self.rows_out.flush()
                ray.train.report({**row, "rows": list(self.rows)})
        self.meter.restart()
        if stop or requested:
            return STOP
        if report and self.gate and step < plan.total_steps:
            self.control.leave(rank=self.rank)  # Tune's decision may take longer than a hang
            if self.gate.should_stop(step=step, rank=self.rank, device=self.device):
                return STOP
        return None

    def _unranked(self, row: dict) -> dict:
        """The row as Ray ranks it for `checkpoint.keep`: with the worst finite score (Ray stores NaN
        and infinities as null, which it cannot rank again after a resume)."""
        score = self.cfg.checkpoint
        if not score.score_metric:
            return row
        return {**row, score.score_metric: -sys.float_info.max if score.score_mode == "max" else sys.float_info.max}

    def _send(self, row: dict) -> None:
        self.rows.append(row)
        self.rows_out.send_rows([row])

    def _finish_with_best(self, step: int, *, stopped: bool) -> dict:
        """The last row's ending under early stopping (stopped, or at the last step): the best
        checkpoint's weights loaded, its score measured again, its test metrics the run's."""
        best = self.stopper.best_step
        if best != step:
            filesystem, run_dir = self.checkpoints
            load_weights(self.engine, ray.train.Checkpoint(f"{run_dir}/{checkpoint_dir_name(best)}",
                                                           filesystem=filesystem))
        metric = self.stopper.metric  # measured again on the loaded weights: the best checkpoint's own score
        ending = {"done": True, "best_step": best, f"best_{metric}": self._evaluate("val")[metric],
                  **({"stopped_early": True} if stopped else {})}
        if self.plan.has_test:
            ending.update(self._evaluate("test", with_details=True))
        return ending

    def _tell_restart(self, step: int) -> None:
        """After a restore, every rank tells the driver its first step and DeepSpeed's own counter."""
        if self.restored_step is None:
            return
        if not step == self.engine.global_steps == self.restored_step + 1:
            raise ContinuityError(f"rank {self.rank} restored the checkpoint of step {self.restored_step} but then "
                                  f"trained step {step} (DeepSpeed global step {self.engine.global_steps}): the "
                                  "run would not continue where it stopped")
        self.channel.send_event({"rank": self.rank, "restored_step": self.restored_step, "first_step": step,
                                 "engine_steps": self.engine.global_steps})
        self.restored_step = None

    def _samples(self) -> list[dict]:
        if self.prompts is None:
            self.prompts = first_prompts(ray.train.get_dataset_shard("val"), device=self.device)
        return continuations(self.engine, self.prompts, context=self.context, tokenizer=self.tokenizer)

    def _evaluate(self, split: str, *, with_details: bool = False) -> dict:
        return evaluate(self.engine, ray.train.get_dataset_shard(split), task=self.task, split=split,
                        rank=self.rank, world=self.world, device=self.device, dtype=self.dtype,
                        batch_rows=self.eval_rows, with_details=with_details)
