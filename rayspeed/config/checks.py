"""Rules that span sections. Each is a small named function that raises ValueError naming the fields."""

from rayspeed.config.batch import resolve_batch
from rayspeed.config.checkpoint import CheckpointConfig
from rayspeed.config.data import DataConfig
from rayspeed.config.deepspeed import deepspeed_config, merge_user_block
from rayspeed.config.k8s import K8sConfig
from rayspeed.config.metrics import METRIC_MODES, check_metric
from rayspeed.config.run import RunConfig
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


def check_early_stopping(train: TrainConfig, checkpoint: CheckpointConfig, data: DataConfig) -> None:
    """Early stopping watches the checkpoint score, on the val split, so its best checkpoint is Ray's best."""
    stopping = train.early_stopping
    if stopping is None:
        return
    if checkpoint.score_metric is None:
        raise ValueError("train.early_stopping: watches checkpoint.score_metric; set it (e.g. val_loss)")
    if stopping.metric not in (None, checkpoint.score_metric):
        raise ValueError(f"train.early_stopping.metric: {stopping.metric} differs from checkpoint.score_metric "
                         f"({checkpoint.score_metric}); the best checkpoint must be the one early stopping keeps, "
                         "so set checkpoint.score_metric instead")
    if not checkpoint.score_metric.startswith("val_") or data.split.shares["val"] == 0:
        raise ValueError(f"train.early_stopping: watches {checkpoint.score_metric}; it needs a val_ metric "
                         "(checkpoint.score_metric) and a val split")


def check_label_smoothing(train: TrainConfig, data: DataConfig) -> None:
    if train.label_smoothing and data.task != "classification":
        raise ValueError(f"train.label_smoothing: smooths class targets; data.task is {data.task}")


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
    """Built-in models read what they were made for: tokens for `transformer`, numbers or tokens for
    `rnn`, numbers for the rest; language modelling is the transformer's."""
    name = getattr(model, "name", None)
    if data.categorical_encoding == "ids" and name != "mlp":
        raise ValueError(f"data.categorical_encoding: ids feeds the mlp model's embedding tables; "
                         f"{name or 'a factory'} reads one-hot inputs (set one_hot)")
    if name is None:
        return  # a factory reads whatever it was written for
    if data.task == "language_modeling" and name != "transformer":
        raise ValueError(f"model.name: {name} does not model language; data.task: language_modeling needs transformer")
    if data.modality == "text" and name not in ("transformer", "rnn"):
        raise ValueError(f"model.name: {name} reads numbers; text (data.format: text) needs transformer or rnn")
    if data.modality != "text" and name == "transformer":
        raise ValueError("model.name: transformer reads tokens: set data.format: text")
    if name == "rnn" and data.modality != "text" and data.windows is None:
        raise ValueError("model.name: rnn reads sequences: text (data.format: text) or windows of rows (data.windows)")


def check_retried_job_resumes(k8s: K8sConfig, run: RunConfig) -> None:
    """A retried RayJob runs the same command again: with resume never, the retry is refused."""
    if k8s.backoff_limit and run.resume == "never":
        raise ValueError(f"k8s.backoff_limit: {k8s.backoff_limit} retries would rerun the same run name, which "
                         "run.resume: never refuses; set run.resume: auto so a retry continues from its checkpoint")


def check_worker_ceiling(k8s: K8sConfig, scaling: ScalingConfig) -> None:
    if k8s.max_worker_replicas is not None and k8s.max_worker_replicas < scaling.num_workers:
        raise ValueError(f"k8s.max_worker_replicas: {k8s.max_worker_replicas} pods cannot hold "
                         f"scaling.num_workers ({scaling.num_workers}), one per pod; raise it or leave it unset")


def run_all(train, scaling, checkpoint, data, block, tune=None, model=None, k8s=None, run=None) -> list[str]:
    """Every cross-section problem, one message each (all are reported, not just the first)."""
    rules = [
        lambda: resolve_batch(train, num_workers=scaling.num_workers),
        lambda: check_precision_fits_device(train, scaling),
        lambda: check_score_metric(checkpoint, data),
        lambda: check_early_stopping(train, checkpoint, data),
        lambda: check_label_smoothing(train, data),
        lambda: check_deepspeed_block(train, scaling, block),
        lambda: check_sweep(tune, train, checkpoint, data),
        lambda: check_model_fits_data(model, data),
        lambda: k8s and run and check_retried_job_resumes(k8s, run),
        lambda: k8s and check_worker_ceiling(k8s, scaling),
    ]
    problems = []
    for rule in rules:
        try:
            rule()
        except ValueError as error:
            problems.append(str(error))
    return problems
