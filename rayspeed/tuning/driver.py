"""`sweep`: runs the experiment's `tune` section in the connected Ray and summarizes it.

The sweep lives in the experiment's run directory (`run.storage_path/run.name`): Tune's experiment
state, and `trials/<trial id>/`, one rayspeed run per trial. Trials run side by side only as far as
the cluster holds all of them at once (driver, training workers and Ray Data's CPUs), so none waits
forever for workers that a running trial holds.
"""

import dataclasses
import math
import os
from collections.abc import Mapping

import ray
from ray import tune
from ray.tune.execution import class_cache

from rayspeed.cluster.credentials import SECRET_ENV
from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.scaling import TRIAL_DRIVER_CPUS, ScalingConfig
from rayspeed.errors import ClusterError
from rayspeed.runs.output import Terminal
from rayspeed.runs.storage import RunStorage
from rayspeed.tuning import search
from rayspeed.tuning.progress import TrialTable
from rayspeed.tuning.report import SweepSummary, summarize_sweep
from rayspeed.tuning.sweep_wandb import log_sweep
from rayspeed.tuning.trial import TRIALS_FOLDER, SweepSpec, TrialRun

# Tune checkpoints: under PBT copies of a trial's latest DeepSpeed checkpoint to clone; under ASHA
# which run and step a paused trial is at.
TUNE_CHECKPOINTS_KEPT = 3
# How often Tune saves the sweep's state (default: adaptive, up to minutes); what --resume sees.
STATE_SAVE_ENV = {"TUNE_GLOBAL_CHECKPOINT_S": "2"}


def embedded_cpus(cfg: ExperimentConfig) -> int:
    """Logical CPUs for an embedded Ray running the sweep: room for `tune.max_concurrent_trials`
    trials, by default as many as the machine's cores hold (at least one)."""
    scaling, cores = cfg.scaling, os.cpu_count() or 1
    per_trial = scaling.trial_cpus
    trials = cfg.tune.max_concurrent_trials or max(1, math.floor(cores / per_trial))
    return max(cores, math.ceil(per_trial * trials))


def trial_concurrency(scaling: ScalingConfig, total: Mapping[str, float], limit: int | None, *, where: str) -> int:
    """Trials the cluster holds at once, at most `limit`.

    Raises:
        ClusterError: not even one trial fits.
    """
    cpus = scaling.trial_cpus
    fits = math.floor(total.get("CPU", 0) / cpus + 1e-9)
    if scaling.use_gpu:
        fits = min(fits, math.floor(total.get("GPU", 0) / (scaling.num_workers * scaling.gpus_per_worker) + 1e-9))
    if fits < 1:
        raise ClusterError(
            f"one trial needs {TRIAL_DRIVER_CPUS:g} CPU for its driver + {scaling.num_workers} workers x "
            f"{scaling.cpus_per_worker:g} CPU + {scaling.data_cpus:g} CPU for Ray Data = {cpus:g} CPUs, but the "
            f"{where} has {total.get('CPU', 0):g}"
        )
    return min(fits, limit or fits)


def sweep(cfg: ExperimentConfig, *, storage: RunStorage, resuming: bool, wandb_mode: str, terminal: Terminal,
          retry_errored: bool, where: str) -> SweepSummary:
    """Runs (or, resuming, continues) the sweep and writes its summary files.

    Args:
        cfg: the validated experiment, with a `tune` section.
        storage: the sweep's directory, already claimed.
        resuming: continue the sweep's Tune state: finished trials are kept, unfinished ones resume
            from their runs' checkpoints, errored ones only with `retry_errored`.
        wandb_mode: how trials log to W&B (the key reaches them as every process of the job gets its
            credentials: `cluster.credentials`).
    """
    for key, value in STATE_SAVE_ENV.items():
        os.environ.setdefault(key, value)
    # Tune copies the driver's AWS credentials into each trial actor's runtime_env, where Ray shows and
    # logs them; trials get them as every process of the job does (`cluster.credentials`).
    class_cache.ENV_VARS_TO_PROPAGATE.difference_update(SECRET_ENV)
    tune_cfg = cfg.tune
    concurrency = trial_concurrency(cfg.scaling, ray.cluster_resources(), tune_cfg.max_concurrent_trials, where=where)
    terminal.say(f"{tune_cfg.num_samples} samples, {concurrency} trial(s) at a time, {tune_cfg.search} search, "
                 f"{tune_cfg.scheduler.name} scheduler on {tune_cfg.metric} ({tune_cfg.objective_mode})")
    spec = SweepSpec(base=cfg, name=cfg.run.name, trials_path=storage.nested(TRIALS_FOLDER, "").storage_uri,
                     wandb_mode=wandb_mode)
    trainable = tune.with_parameters(TrialRun, sweep=spec)
    table = TrialTable(terminal, paths=list(tune_cfg.space), metric=tune_cfg.metric, mode=tune_cfg.objective_mode)
    if resuming and tune.Tuner.can_restore(storage.path, storage_filesystem=storage.filesystem):
        terminal.say(f"continuing sweep '{cfg.run.name}' at {storage.display()}" +
                     (", retrying errored trials" if retry_errored else ""))
        tuner = tune.Tuner.restore(storage.path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=retry_errored, restart_errored=False,
                                   storage_filesystem=storage.filesystem)
        # Tune restores the RunConfig it pickled, whose table wrote to the old process's terminal.
        tuner._local_tuner.get_run_config().callbacks = [table]
    else:
        terminal.say(f"starting sweep '{cfg.run.name}' at {storage.display()}")
        searcher = search.searcher(tune_cfg, seed=cfg.train.seed, concurrency=concurrency)
        tuner = tune.Tuner(
            trainable,
            param_space=search.param_space(tune_cfg),
            tune_config=tune.TuneConfig(
                metric=tune_cfg.metric, mode=tune_cfg.objective_mode, num_samples=tune_cfg.num_samples,
                search_alg=searcher, scheduler=search.scheduler(cfg, searcher=searcher, concurrency=concurrency),
                trial_dirname_creator=trial_dirname, reuse_actors=False),
            run_config=tune.RunConfig(
                name=storage.name, storage_path=storage.root, storage_filesystem=storage.filesystem,
                failure_config=tune.FailureConfig(max_failures=tune_cfg.max_trial_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=TUNE_CHECKPOINTS_KEPT),
                callbacks=[table], verbose=0),
        )
    results = tuner.fit()
    summary = summarize_sweep(cfg, results, storage)
    try:
        return dataclasses.replace(summary, wandb=log_sweep(cfg, storage, summary, mode=wandb_mode))
    except Exception as error:  # the sweep itself is done and written
        terminal.say(f"W&B did not take the sweep's table or its best checkpoint: {error!r}")
        return summary


def trial_dirname(trial) -> str:
    """Tune's folder for a trial: its id, like the trial's run."""
    return trial.trial_id
