"""`fit`: the one way to train. It runs inside a connected Ray (the verb connects, not fit) and
assembles a run: data, plan, model check, TorchTrainer, live recording, summary.

It takes the whole ExperimentConfig because it is the assembly point; everything it calls gets
only its own section. `train`, every Tune trial and every submitted job call it.
"""

import contextlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ray.train
from ray.data import DataContext
from ray.train.torch import TorchConfig, TorchTrainer

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.redact import redact
from rayspeed.datasets import PreparedData, Preprocessing, build_datasets
from rayspeed.errors import RunStopped, TrainingFailed
from rayspeed.runs.checkpoint_recovery import set_aside_damaged
from rayspeed.runs.guard import RunStart
from rayspeed.runs.layout import (
    DATA_REPORT_FILE,
    INPUT_SPEC_FILE,
    PREPROCESSING_FILE,
    RAY_SNAPSHOT,
    WARM_START_DIR,
)
from rayspeed.runs.metrics_log import MetricsLog
from rayspeed.runs.progress import RunObserver
from rayspeed.runs.storage import RunStorage
from rayspeed.runs.summary import RunSummary, summarize
from rayspeed.trainers.checkpointing import numbers, rank0_artifacts
from rayspeed.trainers.gate import EpochGate
from rayspeed.trainers.ingest import ingest_config, place_data_tasks
from rayspeed.trainers.loop import train_loop_per_worker
from rayspeed.trainers.models import check_model_builds
from rayspeed.trainers.plan import LoopPlan, plan_loop
from rayspeed.trainers.recorder import RunRecorder
from rayspeed.trainers.run_control import RunControl
from rayspeed.trainers.tracking import NullSink, WandbSink, data_summary, run_wandb_settings
from rayspeed.trainers.transfer import planned_adoption, read_initial_weights
from rayspeed.trainers.wandb_media import classification_media

# How often Ray Train's controller polls the workers (Ray's default: 2 s), so also how long a reported
# checkpoint waits to be committed (report_checkpoint waits for it).
CONTROLLER_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
CONTROLLER_POLL_S = 0.2


def fit(cfg: ExperimentConfig, *, storage: RunStorage, start: RunStart, wandb_mode: str,
        observers: Sequence[RunObserver] = (), train_callbacks: Sequence[ray.train.UserCallback] = (),
        gate: EpochGate | None = None, wandb_labels: Mapping[str, Any] | None = None,
        stop_requested: threading.Event | None = None) -> RunSummary:
    """Trains the experiment in the connected Ray and returns its summary.

    Args:
        cfg: the validated (and pre-flighted) experiment.
        storage: the run directory, already claimed (`runs.guard.claim_run`).
        start: what the claim decided (new or resuming, the W&B run id).
        wandb_mode: online, offline or disabled, as the caller resolved it.
        observers: told about every committed row (progress display).
        train_callbacks: Ray Train callbacks.
        gate: a Tune trial's epoch gate: the workers wait at every epoch end for Tune's decision.
        wandb_labels: W&B config entries beside the experiment (a trial's sweep and hyperparameters).
        stop_requested: set by the caller's SIGTERM handler to stop at the next step boundary with a
            checkpoint. When `run.stop_grace_s` passes first, the run sends itself SIGTERM again, which
            that handler must turn into a KeyboardInterrupt (the CLI's does).

    A run whose directory holds `warm_start/` (another run's checkpoint, put there by a PBT trial)
    starts from it instead of from scratch.

    A resumed run first sets aside damaged checkpoints (`runs.checkpoint_recovery`).

    Raises:
        ConfigError, DataError: before any worker starts. TrainingFailed: after `run.max_failures`.
        RunStopped: `stop_requested` was set and the run stopped after a checkpoint.
    """
    notes = _Notes(observers)
    # A run with a checkpoint restores its own weights: it freezes the same layers, nothing more.
    needs_weights = cfg.model.init_from and not storage.exists(RAY_SNAPSHOT)
    initial_weights = read_initial_weights(cfg.model) if needs_weights else None
    prepared = _prepare_data(cfg, storage, resuming=start.resuming, observers=observers)
    notes(prepared.describe())
    plan = plan_loop(cfg, split_rows=prepared.split_rows)
    spec = prepared.input_spec
    check_model_builds(cfg.model, spec)
    if initial_weights is not None:
        notes(planned_adoption(cfg.model, spec, initial_weights))
    notes(f"{plan.total_steps} steps ({plan.steps_per_epoch} per epoch) of global batch {cfg.batch.global_batch} "
          f"on {cfg.scaling.num_workers} workers")
    _save_once(storage, PREPROCESSING_FILE, prepared.preprocessing.to_dict())
    _save_once(storage, INPUT_SPEC_FILE, spec.to_dict())
    _save_once(storage, DATA_REPORT_FILE, prepared.report())
    metrics = MetricsLog(storage)
    set_aside = set_aside_damaged(storage, warn=notes) if start.resuming else []
    if start.resuming:
        metrics.append(_rows_of_latest_checkpoint(storage))  # a driver killed before committing them
    if stop_requested is not None and stop_requested.is_set():  # during data preparation: nothing to save
        raise RunStopped("the run stopped before its workers started: continue it with --resume")
    sink = _wandb_sink(cfg, storage, run_id=start.wandb_run_id, mode=wandb_mode, labels=wandb_labels or {},
                       data_report=prepared.report())
    sink.start()
    sink.forget_checkpoints(set_aside)  # a new checkpoint of the same step is another version
    where = sink.where
    if where:
        notes(f"W&B: {where}")
    sink.log(metrics.rows)  # a resumed run: what a killed driver's W&B may have lost (see tracking)
    recorder = RunRecorder(metrics, sink, plan, world=cfg.scaling.num_workers, observers=list(observers))
    control = RunControl(stop_requested=stop_requested, grace_s=cfg.run.stop_grace_s,
                         hang_timeout_s=cfg.run.hang_timeout_s, note=notes)
    trainer = _trainer(cfg, plan, prepared, storage, recorder, train_callbacks, gate, control,
                       initial_weights=None if initial_weights is None else [ray.put(initial_weights.tensors)])
    recorder.start()
    control.start()
    try:
        result = _run(trainer, max_failures=cfg.run.max_failures)
    except KeyboardInterrupt:  # Ctrl-C, or a SIGTERM past the grace period: workers may still be sending
        _close_quietly(control.close, lambda: recorder.stop(drain=False), sink.finish)
        raise
    except BaseException:
        _close_quietly(control.close, recorder.stop, sink.finish)  # their errors (W&B's service gone) must not
        raise  # hide this one
    control.close()
    recorder.stop()
    last = result.metrics or {}  # the workers' last report: the stop checkpoint's
    # W&B first: a Tune trial's actor may end soon after its run does.
    _finish_wandb(sink, failed=recorder.wandb_failed, kept=_kept_checkpoints(result),
                  media=lambda: _test_media(metrics.rows, classes=spec.classes))
    if last.get("stop_requested") and not last.get("done"):
        raise RunStopped(f"the run stopped after a checkpoint at step {last['step']} of {plan.total_steps}: "
                         "continue it with --resume")
    best, best_metrics = _best_checkpoint(result, storage)
    return summarize(storage, best_checkpoint=best, best_metrics=best_metrics, classes=spec.classes,
                     baselines=prepared.baselines, wandb=where)


def _finish_wandb(sink: WandbSink | NullSink, *, failed: bool, kept: list[tuple[str, dict]],
                  media: Callable[[], dict]) -> None:
    """The checkpoints the run keeps that W&B lacks (a rank 0 lost before it told the driver) and the
    run's results, then the W&B run closed. A W&B that failed is only closed: its service may have had
    the SIGTERM too. W&B's errors here go to the run log: the run itself succeeded."""
    if not failed:
        for what, log in (("checkpoints", lambda: sink.log_checkpoints(kept)),
                          ("results", lambda: sink.log_media(media(), after_last=False))):
            try:
                log()
            except Exception as error:
                print(f"[rayspeed] W&B did not take the run's {what} ({error!r})", flush=True)
    _close_quietly(sink.finish)


def _kept_checkpoints(result) -> list[tuple[str, dict]]:
    """The checkpoints Ray keeps, worst first (its best ones, and the latest when it is not among them)."""
    kept = [(checkpoint.path, numbers(metrics)) for checkpoint, metrics in result.best_checkpoints or []]
    if result.checkpoint is not None and all(path != result.checkpoint.path for path, _ in kept):
        kept.insert(0, (result.checkpoint.path, numbers(result.metrics or {})))
    return kept


def _test_media(rows: list[dict], *, classes: list) -> dict:
    """The test split's confusion chart and per-class table (a classification that ended with a test)."""
    confusion = rows[-1].get("test_confusion") if rows else None
    return classification_media("test", confusion, classes) if confusion else {}


def _run(trainer, *, max_failures: int):
    # Ray Train's controller takes its settings from environment variables of the process that calls
    # fit (the CLI's, or a sweep trial's actor), which Ray passes on to it.
    os.environ.setdefault(CONTROLLER_POLL_ENV, f"{CONTROLLER_POLL_S:g}")
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as error:
        print(f"[rayspeed] training failed: {error}", flush=True)  # the whole story, to the run log
        raise TrainingFailed(
            f"training failed after run.max_failures ({max_failures}) restarts: {_cause(error)}\n"
            "The run keeps its checkpoints; continue it with --resume"
        ) from error


def _close_quietly(*closers) -> None:
    """Stops the recorder and W&B while another error propagates; theirs go to the run log."""
    for close in closers:
        try:
            close()
        except Exception as error:
            print(f"[rayspeed] while stopping: {error}", flush=True)


def _cause(error: Exception) -> str:
    """One line: the first worker's (or the controller's) exception, not Ray's whole report."""
    causes = [*getattr(error, "worker_failures", {}).values(), getattr(error, "controller_failure", None)]
    cause = next((c for c in causes if c is not None), error)
    cause = getattr(cause, "cause", None) or cause  # RayTaskError wraps the user's exception
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"


class _Notes:
    """rayspeed's own lines: to stdout (the run log under the CLI) and to the observers (the terminal)."""

    def __init__(self, observers: Sequence[RunObserver]):
        self._observers = observers

    def __call__(self, line: str) -> None:
        print(f"[rayspeed] {line}", flush=True)
        for observer in self._observers:
            observer.on_note(line)


def _prepare_data(cfg: ExperimentConfig, storage: RunStorage, *, resuming: bool,
                  observers: Sequence[RunObserver]) -> PreparedData:
    """A resumed run reuses the preprocessing it was trained with."""
    saved = storage.read_text(PREPROCESSING_FILE) if resuming else None
    place_data_tasks(cfg.scaling)
    context = DataContext.get_current()
    context.enable_progress_bars = False  # an observer on a terminal turns them on for this phase
    context.print_on_execution_start = False
    with contextlib.ExitStack() as stack:
        for observer in observers:
            stack.enter_context(observer.preparing_data())
        prepared = build_datasets(cfg.data, seed=cfg.train.seed,
                                  fitted=Preprocessing.from_dict(json.loads(saved)) if saved else None)
    for dataset in prepared.datasets.values():
        dataset.context.enable_progress_bars = False  # workers: one bar per rank per epoch otherwise
    return prepared


def _trainer(cfg: ExperimentConfig, plan: LoopPlan, prepared: PreparedData, storage: RunStorage,
             recorder: RunRecorder, train_callbacks: Sequence, gate: EpochGate | None,
             control: RunControl, *, initial_weights: list[ray.ObjectRef] | None) -> TorchTrainer:
    scaling = cfg.scaling
    warm_start = (ray.train.Checkpoint(storage.join(WARM_START_DIR), filesystem=storage.filesystem)
                  if storage.exists(WARM_START_DIR) else None)
    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.use_gpu else {})}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "experiment": cfg, "plan": plan, "input_spec": prepared.input_spec, "channel": recorder.channel,
            "gate": gate, "control": control.step_control, "warm_start": warm_start,
            "initial_weights": initial_weights,
            "checkpoints": (storage.filesystem, storage.path),
            "artifacts": rank0_artifacts(preprocessing=prepared.preprocessing.to_dict(),
                                         input_spec=prepared.input_spec.to_dict())},
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                               resources_per_worker=resources,
                                               label_selector=dict(scaling.worker_node_labels) or None),
        run_config=ray.train.RunConfig(
            name=cfg.run.name,
            # Ray logs and shows its storage path: never a URI's credentials (`?secret_key=`), which stay in
            # the filesystem object.
            storage_path=storage.root, storage_filesystem=storage.filesystem,
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures,
                                                   controller_failure_limit=cfg.run.max_controller_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.checkpoint.keep,
                                                         checkpoint_score_attribute=cfg.checkpoint.score_metric,
                                                         checkpoint_score_order=cfg.checkpoint.score_mode),
            callbacks=list(train_callbacks),
            worker_runtime_env={"env_vars": _worker_env(use_gpu=scaling.use_gpu)},
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
        datasets=prepared.datasets,
        dataset_config=ingest_config(),
    )


def _worker_env(*, use_gpu: bool) -> dict[str, str]:
    return {
        "DS_ACCELERATOR": "cuda" if use_gpu else "cpu",  # never oneCCL, even where it is installed
        # DeepSpeed's ZeRO calls a torch collective that torch deprecates, once per step.
        "PYTHONWARNINGS": "ignore::FutureWarning:torch.distributed.c10d_logger",
    }


def _save_once(storage: RunStorage, name: str, content: dict) -> None:
    if not storage.exists(name):
        storage.write(json.dumps(content, indent=2), name)


def _rows_of_latest_checkpoint(storage: RunStorage) -> list[dict]:
    if not storage.exists(RAY_SNAPSHOT):
        return []
    latest = ray.train.Result.from_path(storage.path, storage_filesystem=storage.filesystem).metrics or {}
    return latest.get("rows", [])


def _best_checkpoint(result, storage: RunStorage) -> tuple[str | None, dict]:
    """The best checkpoint as Ray ranks them for `checkpoint.keep` (by `checkpoint.score_metric`, a tie
    to the later one; without a metric the latest): the one W&B's `best` alias is on."""
    ranked = result.best_checkpoints or []
    if not ranked:
        return None, {}
    best, metrics = ranked[-1]
    return storage.uri(best.path), metrics


def _wandb_sink(cfg: ExperimentConfig, storage: RunStorage, *, run_id: str, mode: str, labels: Mapping[str, Any],
                data_report: dict):
    if mode == "disabled":
        return NullSink()
    return WandbSink(run_wandb_settings(cfg.tracking, storage, run_id=run_id, mode=mode,
                                        config={**redact(cfg.resolved_dict()), **labels},
                                        summary=data_summary(data_report), score_metric=cfg.checkpoint.score_metric))
