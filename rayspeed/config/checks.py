"""Rules that span sections. Each is a small named function that raises ValueError naming the fields."""

from rayspeed.config.batch import resolve_batch
from rayspeed.config.checkpoint import CheckpointConfig
from rayspeed.config.data import DataConfig
from rayspeed.config.deepspeed import deepspeed_config, merge_user_block
from rayspeed.config.metrics import METRIC_MODES, check_metric
from rayspeed.config.scaling import ScalingConfig
from rayspeed.config.train import TrainConfig
from rayspeed.config.tune import TuneConfig


def check_precision_fits_device(train: TrainConfig, scaling: ScalingConfig) -> None:
    """CPU workers train in fp32: DeepSpeed has no fp16 on CPU, and bf16 there is untested and slow."""
    if train.precision != "fp32" and not scaling.use_gpu:
        raise ValueError(
            f"train.precision: {train.precision} runs on GPU workers only (scaling.use_gpu is false); "
            "CPU workers train in fp32"
        )


def check_score_metric(checkpoint: CheckpointConfig, data: DataConfig) -> None:
    metric = checkpoint.score_metric
    check_metric("checkpoint.score_metric", metric, task=data.task, val_share=data.split.shares["val"])
    expected = METRIC_MODES.get(metric or "")
    if expected and checkpoint.score_mode != expected:
        raise ValueError(
            f"checkpoint.score_mode: {checkpoint.score_mode} would keep the worst checkpoints by "
            f"{metric}; use {expected}"
        )


def check_deepspeed_block(train: TrainConfig, scaling: ScalingConfig, block: dict) -> None:
    if "scheduler" in block:
        raise ValueError("deepspeed.scheduler: rayspeed runs its own lr schedule (DeepSpeed would ignore this "
                         "block); set train.lr_schedule, train.warmup_steps and train.min_lr_ratio")
    try:
        batch = resolve_batch(train, num_workers=scaling.num_workers)
    except ValueError:
        return  # reported by the batch rule itself
    merge_user_block(deepspeed_config(train, batch), block)


def check_sweep(tune: TuneConfig | None, train: TrainConfig, checkpoint: CheckpointConfig, data: DataConfig) -> None:
    """A sweep's schedulers count epochs, and its metric must be measured."""
    if tune is None:
        return
    check_metric("tune.metric", tune.metric, task=data.task, val_share=data.split.shares["val"])
    if tune.scheduler.name == "fifo":
        return
    if train.epochs is None:
        raise ValueError(f"tune.scheduler: {tune.scheduler.name} counts epochs; set train.epochs, not train.max_steps")
    if lengths := [path for path in tune.space if path in ("train.epochs", "train.max_steps")]:
        raise ValueError(f"tune.space: {lengths[0]} is the scheduler's time axis; search it with scheduler fifo")
    if tune.scheduler.grace_period > train.epochs:
        raise ValueError(f"tune.scheduler.grace_period: {tune.scheduler.grace_period} epochs is longer than the "
                         f"run (train.epochs = {train.epochs})")
    if tune.scheduler.name == "pbt" and tune.scheduler.perturbation_interval >= train.epochs:
        raise ValueError(f"tune.scheduler.perturbation_interval: {tune.scheduler.perturbation_interval} epochs "
                         f"leaves pbt no epoch to act on (train.epochs = {train.epochs})")
    if tune.scheduler.name in ("asha", "pbt") and checkpoint.every_n_steps is not None:
        needs = "resumes paused trials from" if tune.scheduler.name == "asha" else "copies"
        raise ValueError(f"checkpoint.every_n_steps: {tune.scheduler.name} {needs} the checkpoint of an epoch's "
                         "end; leave it null (a checkpoint every epoch)")


def check_model_fits_data(model, data: DataConfig) -> None:
    """Built-in models read what they were made for: tokens for `transformer`, numbers for the rest."""
    name = getattr(model, "name", None)
    if data.categorical_encoding == "ids" and name != "mlp":
        raise ValueError(f"data.categorical_encoding: ids feeds the mlp model's embedding tables; "
                         f"{name or 'a factory'} reads one-hot inputs (set one_hot)")
    if name is None:
        return  # a factory reads whatever it was written for
    if data.modality == "text" and name != "transformer":
        raise ValueError(f"model.name: {name} reads numbers; language modelling (data.format: text) needs transformer")
    if data.modality != "text" and name == "transformer":
        raise ValueError("model.name: transformer reads tokens: set data.format: text and data.task: language_modeling")


def run_all(train, scaling, checkpoint, data, block, tune=None, model=None) -> list[str]:
    """Every cross-section problem, one message each (all are reported, not just the first)."""
    rules = [
        lambda: resolve_batch(train, num_workers=scaling.num_workers),
        lambda: check_precision_fits_device(train, scaling),
        lambda: check_score_metric(checkpoint, data),
        lambda: check_deepspeed_block(train, scaling, block),
        lambda: check_sweep(tune, train, checkpoint, data),
        lambda: check_model_fits_data(model, data),
    ]
    problems = []
    for rule in rules:
        try:
            rule()
        except ValueError as error:
            problems.append(str(error))
    return problems
