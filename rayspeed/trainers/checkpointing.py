"""Checkpoints: every rank's DeepSpeed files plus the state to continue exactly (step, RNG, schedule).

Layout of one checkpoint (Ray merges the directories every rank reports into one):
    step_00000040/
        deepspeed/          engine.save_checkpoint: model, ZeRO shards of every rank, LR schedule
        latest              DeepSpeed's pointer to the tag
        train_state.json    step and early stopping's state (rank 0)
        rng_rank{r}.pt      torch/numpy/python RNG of rank r
        preprocessing.json  the fitted preprocessing (rank 0), separate from the loop's state
        input_spec.json     what the model takes and gives (rank 0)
        manifest_rank{r}.json  the files rank r wrote, with sizes and sha256 (written last)
"""

import contextlib
import json
import random
import tempfile
from pathlib import Path

import numpy as np
import ray.train
import torch

from rayspeed.runs.checkpoint_manifest import write_manifest
from rayspeed.runs.layout import (
    DEEPSPEED_TAG,
    INPUT_SPEC_FILE,
    PREPROCESSING_FILE,
    TRAIN_STATE,
    checkpoint_dir_name,
)


@contextlib.contextmanager
def saved_checkpoint(engine, *, step: int, rank: int, world: int, state: dict, artifacts: dict[str, dict]):
    """Writes this rank's part of the checkpoint of `step` and yields it, to report before the block
    ends; all ranks must enter it at the same step.

    `engine.save_checkpoint` is a collective: each rank writes its own ZeRO shards. The SYNC
    upload inside `ray.train.report` finishes before it returns, so the temporary directory can go.

    Args:
        state: the loop's state beside the step (early stopping's), saved by rank 0.
        artifacts: JSON files rank 0 adds (the fitted preprocessing and the input spec).
    """
    with tempfile.TemporaryDirectory(prefix="rayspeed-ckpt-") as tmp:
        engine.save_checkpoint(tmp, tag=DEEPSPEED_TAG, client_state={"step": step})
        torch.save(_rng_state(), Path(tmp) / f"rng_rank{rank}.pt")
        if rank == 0:
            (Path(tmp) / TRAIN_STATE).write_text(json.dumps({**state, "step": step}))
            for name, content in artifacts.items():
                (Path(tmp) / name).write_text(json.dumps(content))
        write_manifest(tmp, rank=rank, world_size=world)  # last: a checkpoint without it is incomplete
        yield ray.train.Checkpoint.from_directory(tmp)


def report_checkpoint(metrics: dict, checkpoint: ray.train.Checkpoint, *, step: int) -> list[tuple[str, dict]]:
    """Reports the checkpoint and waits until Ray Train has committed it (listed in its snapshot): a
    failure from here on restarts from this checkpoint, so at most one checkpoint interval is redone.
    Without the wait, Ray's controller learns of it at its next poll of the workers, and a failure
    before that restarts from the one before.

    Returns:
        The checkpoints Ray keeps now (`checkpoint.keep`), worst first: each one's path and numeric
        metrics.
    """
    ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=checkpoint_dir_name(step))
    kept = ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
    return [(reported.checkpoint.path, numbers(reported.metrics)) for reported in kept]


def numbers(metrics: dict) -> dict:
    """The numeric metrics of a report (not its carried rows, confusion matrices or flags)."""
    return {key: value for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def load_weights(engine, checkpoint: ray.train.Checkpoint) -> None:
    """Loads a checkpoint of this run into the engine, to evaluate it (early stopping's best)."""
    with checkpoint.as_directory() as directory:
        engine.load_checkpoint(directory, tag=DEEPSPEED_TAG)


def rank0_artifacts(*, preprocessing: dict, input_spec: dict) -> dict[str, dict]:
    return {PREPROCESSING_FILE: preprocessing, INPUT_SPEC_FILE: input_spec}


def restore(engine, *, rank: int, warm_start: ray.train.Checkpoint | None = None) -> tuple[dict, bool]:
    """Loads the latest checkpoint Ray knows for this run (after a restart or `--resume`), else the
    run's warm start: another run's checkpoint it continues from (a PBT trial copying a peer).

    Returns:
        The loop's saved state (`step`: the optimizer step the checkpoint was taken after, 0 when
        there is none), and whether it was the warm start (whose random state and loop state belong to
        the other run and are not restored, but its step).
    """
    checkpoint = ray.train.get_checkpoint()
    warm = checkpoint is None and warm_start is not None
    checkpoint = warm_start if warm else checkpoint
    if checkpoint is None:
        return {"step": 0}, False
    with checkpoint.as_directory() as directory:
        engine.load_checkpoint(directory, tag=DEEPSPEED_TAG, load_optimizer_states=True,
                               load_lr_scheduler_states=True)
        state = json.loads((Path(directory) / TRAIN_STATE).read_text())
        rng_file = Path(directory) / f"rng_rank{rank}.pt"
        if rng_file.exists() and not warm:
            _set_rng_state(torch.load(rng_file, weights_only=False))
    return ({"step": state["step"]} if warm else state), warm


def seed_rank(seed: int, rank: int) -> None:
    """Per-rank randomness (dropout masks, shuffles) from the run's seed: identical weights come from
    seeding before the model is built, different masks from seeding each rank after it."""
    derived = int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])
    torch.manual_seed(derived)
    np.random.seed(derived)
    random.seed(derived)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
