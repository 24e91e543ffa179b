"""`fit`: the one place that assembles a run (guard, cluster, data, TorchTrainer, summary).

It takes the whole ExperimentConfig because it is the assembly point; everything it calls gets
only its own section.
"""

import json
import secrets
from collections.abc import Mapping
from pathlib import Path

import ray.train
import yaml
from ray.train.torch import TorchConfig, TorchTrainer

from rayspeed.cluster import connect
from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.redact import redact
from rayspeed.datasets import build_datasets
from rayspeed.errors import TrainingFailed
from rayspeed.trainers.loop import train_loop_per_worker
from rayspeed.trainers.plan import LoopPlan, plan_loop
from rayspeed.trainers.run_guard import CONFIG_FILE, claim_run
from rayspeed.trainers.run_storage import RunStorage
from rayspeed.trainers.summary import RunSummary, summarize
from rayspeed.trainers.tracking import RunTracker, WandbSettings, recover_metrics

IDENTITY_FILE = "rayspeed.json"
# Worker-group startup failures (e.g. resources that never appear) are retried this often, not forever.
CONTROLLER_FAILURE_LIMIT = 3


def fit(cfg: ExperimentConfig, *, address: str | None, env: Mapping[str, str]) -> RunSummary:
    """Trains the experiment and returns its summary.

    Args:
        cfg: the validated experiment.
        address: Ray address, or None for an embedded local Ray.
        env: the caller's environment (W&B mode and credentials to forward); read nowhere else.
    """
    storage = RunStorage.open(cfg.run.storage_path, cfg.run.name)
    start = claim_run(cfg, storage)
    print(f"[rayspeed] {start.message}", flush=True)
    with connect(cfg.scaling, address=address, env=env) as where:
        print(f"[rayspeed] cluster: {where}", flush=True)
        prepared = build_datasets(cfg.data, seed=cfg.train.seed)
        print(f"[rayspeed] {prepared.describe()}", flush=True)
        plan = plan_loop(cfg, split_rows=prepared.split_rows, num_features=prepared.num_features,
                         num_classes=prepared.num_classes)
        print(f"[rayspeed] {plan.total_steps} steps ({plan.steps_per_epoch} per epoch) of global batch "
              f"{cfg.batch.global_batch} on {cfg.scaling.num_workers} workers", flush=True)
        identity = _record_run(cfg, storage)
        tracker = RunTracker(storage, total_steps=plan.total_steps,
                             wandb=_wandb_settings(cfg, storage, run_id=identity["wandb_run_id"], env=env),
                             wandb_backlog=recover_metrics(storage) if start.resuming else [])
        try:
            result = _trainer(cfg, plan, prepared.datasets, storage, tracker).fit()
        except ray.train.TrainingFailedError as error:
            raise TrainingFailed(
                f"training failed: {error}\nThe run keeps its checkpoints; continue it with --resume"
            ) from error
        return summarize(storage, result, classes=prepared.classes,
                         score_metric=cfg.checkpoint.score_metric, score_mode=cfg.checkpoint.score_mode)


def _trainer(cfg: ExperimentConfig, plan: LoopPlan, datasets: dict, storage: RunStorage,
             tracker: RunTracker) -> TorchTrainer:
    scaling = cfg.scaling
    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.use_gpu else {})}
    score = cfg.checkpoint.score_metric
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"experiment": cfg, "plan": plan},
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=cfg.run.name,
            storage_path=storage.storage_uri,
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures,
                                                   controller_failure_limit=CONTROLLER_FAILURE_LIMIT),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.checkpoint.keep,
                                                         checkpoint_score_attribute=score,
                                                         checkpoint_score_order=cfg.checkpoint.score_mode),
            callbacks=[tracker],
            worker_runtime_env={"env_vars": _worker_env(use_gpu=scaling.use_gpu)},
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # not one INFO line per report
        ),
        datasets=_quiet(datasets),
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),  # val/test: every rank, row-masked
    )


def _worker_env(*, use_gpu: bool) -> dict[str, str]:
    return {
        "DS_ACCELERATOR": "cuda" if use_gpu else "cpu",  # never oneCCL, even where it is installed
        # DeepSpeed's ZeRO calls a torch collective that torch deprecates, once per step.
        "PYTHONWARNINGS": "ignore::FutureWarning:torch.distributed.c10d_logger",
    }


def _quiet(datasets: dict) -> dict:
    """No Ray Data progress bars from the workers: they would print one per rank per epoch and
    per evaluation. The per-epoch [rayspeed] line is the training progress."""
    for dataset in datasets.values():
        dataset.context.enable_progress_bars = False
    return datasets


def _record_run(cfg: ExperimentConfig, storage: RunStorage) -> dict:
    """Writes the resolved config and the run's identity the first time; a resume reuses them."""
    saved = storage.read_text(IDENTITY_FILE)
    if saved:
        return json.loads(saved)
    identity = {"wandb_run_id": secrets.token_hex(4)}
    storage.write(yaml.safe_dump(redact(cfg.resolved_dict()), sort_keys=False), CONFIG_FILE)
    storage.write(json.dumps(identity), IDENTITY_FILE)
    return identity


def _wandb_settings(cfg: ExperimentConfig, storage: RunStorage, *, run_id: str,
                    env: Mapping[str, str]) -> WandbSettings:
    tracking = cfg.tracking
    mode = tracking.mode if tracking.mode != "auto" else ("online" if env.get("WANDB_API_KEY") else "offline")
    directory = storage.path if storage.is_local() else str(Path.home() / ".rayspeed" / "wandb" / cfg.run.name)
    Path(directory).mkdir(parents=True, exist_ok=True)
    return WandbSettings(project=tracking.project, entity=tracking.entity, group=tracking.group, mode=mode,
                         run_id=run_id, name=cfg.run.name, dir=directory, config=redact(cfg.resolved_dict()))
