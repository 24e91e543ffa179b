"""The baseline: the same model, batch, ZeRO stage and loss as a rayspeed experiment, trained by a
plain DeepSpeed script with a torch DataLoader over rayspeed's own preprocessed train split
(`prepared_tensors.py`). Launch with torchrun; rank 0 prints one JSON line.

    torchrun --nproc_per_node 2 benchmarks/native_deepspeed.py TENSORS_DIR CONFIG [section.key=value ...]
"""

import json
import sys
import time
from pathlib import Path

import deepspeed
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from rayspeed.config import load_config
from rayspeed.datasets.preprocessing import InputSpec
from rayspeed.trainers.engine import INPUT_DTYPES, build_engine
from rayspeed.trainers.models import build_model
from rayspeed.trainers.plan import plan_loop
from rayspeed.trainers.tasks import task_for

WINDOW_STEPS = 10  # as rayspeed's log_every_n_steps in the compared runs: the first window is warm-up


def main(tensors: str, config: str, *overrides: str) -> None:
    cfg = load_config(config, list(overrides))
    deepspeed.init_distributed(dist_backend="gloo")
    rank = dist.get_rank()
    with np.load(Path(tensors) / "train.npz") as saved:
        columns = {name: torch.from_numpy(saved[name]) for name in saved.files}
    spec = InputSpec(**json.loads((Path(tensors) / "input_spec.json").read_text()))
    rows = len(columns["features"])
    plan = plan_loop(cfg, split_rows={"train": rows, "val": 1, "test": 0})
    batch = cfg.batch
    sampler = DistributedSampler(range(rows), seed=cfg.train.seed, drop_last=True)
    # The loader yields row positions; each micro batch is one indexing of the whole tensors.
    loader = DataLoader(range(len(sampler)), batch_size=batch.micro_batch_per_worker, drop_last=True)
    torch.manual_seed(cfg.train.seed)
    task = task_for(spec, label_smoothing=cfg.train.label_smoothing)
    engine = build_engine(build_model(cfg.model, spec), ds_config=plan.ds_config, lr_plan=plan.lr_plan,
                          peak_lr=cfg.train.lr)
    dtype = INPUT_DTYPES[cfg.train.precision]
    marks = {"train_start": time.time()}
    step, accumulation = 0, batch.grad_accumulation
    for epoch in range(plan.num_epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        for index, positions in enumerate(loader):
            if index >= plan.steps_per_epoch * accumulation or step >= plan.total_steps:
                break
            micro = {name: values[order[positions]] for name, values in columns.items()}
            loss = task.loss(engine(*task.inputs(micro, dtype=dtype)), micro)
            engine.backward(loss)
            engine.step()
            if (index + 1) % accumulation == 0:
                step += 1
                if step == WINDOW_STEPS:
                    marks["first_window_end"] = time.time()
        if step >= plan.total_steps:
            break
    marks["train_end"] = time.time()
    if rank == 0:
        steady_s = marks["train_end"] - marks["first_window_end"]
        print(json.dumps({"steps": step, "marks": marks,
                          "samples_per_s": (step - WINDOW_STEPS) * batch.global_batch / steady_s}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
