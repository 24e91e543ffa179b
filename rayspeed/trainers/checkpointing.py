"""Checkpoints: every rank's DeepSpeed files plus the state to continue exactly (step, RNG, schedule).

Layout of one checkpoint (Ray merges the directories every rank reports into one):
    step_00000040/
        deepspeed/          engine.save_checkpoint: model, ZeRO shards of every rank, LR scheduler
        latest              DeepSpeed's pointer to the tag
        train_state.json    step (rank 0)
        rng_rank{r}.pt      torch/numpy/python RNG of rank r
"""

import json
import random
import tempfile
from pathlib import Path

import numpy as np
import ray.train
import torch

DEEPSPEED_TAG = "deepspeed"
TRAIN_STATE = "train_state.json"


def checkpoint_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def save_and_report(engine, metrics: dict, *, step: int, rank: int) -> None:
    """Writes this rank's part and reports it; all ranks must call this at the same step.

    `engine.save_checkpoint` is a collective: each rank writes its own ZeRO shards. The SYNC
    upload inside `report` finishes before it returns, so the temporary directory can go.
    """
    with tempfile.TemporaryDirectory(prefix="rayspeed-ckpt-") as tmp:
        engine.save_checkpoint(tmp, tag=DEEPSPEED_TAG, client_state={"step": step})
        torch.save(_rng_state(), Path(tmp) / f"rng_rank{rank}.pt")
        if rank == 0:
            (Path(tmp) / TRAIN_STATE).write_text(json.dumps({"step": step}))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=checkpoint_dir_name(step))


def restore(engine, *, rank: int) -> int:
    """Loads the latest checkpoint Ray knows for this run (after a restart or `--resume`).

    Returns:
        The optimizer step the checkpoint was taken after; 0 when there is none.
    """
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        engine.load_checkpoint(directory, tag=DEEPSPEED_TAG, load_optimizer_states=True,
                               load_lr_scheduler_states=True)
        step = json.loads((Path(directory) / TRAIN_STATE).read_text())["step"]
        rng_file = Path(directory) / f"rng_rank{rank}.pt"
        if rng_file.exists():
            _set_rng_state(torch.load(rng_file, weights_only=False))
    print(f"[rayspeed] rank {rank} continues after the checkpoint of step {step}", flush=True)
    return step


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
