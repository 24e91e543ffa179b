"""The baseline: the same model, data, batch and ZeRO stage as a rayspeed experiment, trained by a
plain DeepSpeed script with a torch DataLoader. Launch with torchrun; prints one JSON line (rank 0).

    torchrun --nproc_per_node 2 benchmarks/native_deepspeed.py examples/digits.yaml
"""

import json
import statistics
import sys
import time

import deepspeed
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from rayspeed.config import load_config
from rayspeed.datasets.preprocessing import InputSpec
from rayspeed.trainers.engine import build_engine
from rayspeed.trainers.models import build_model
from rayspeed.trainers.schedule import LrPlan

WINDOW_STEPS = 10


def main(config_path: str, *overrides: str) -> None:
    started = time.perf_counter()
    cfg = load_config(config_path, overrides)
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    features, labels = load_digits(return_X_y=True)
    train_rows = int(len(features) * cfg.data.split.train)
    rng = np.random.default_rng(cfg.train.seed)
    order = rng.permutation(len(features))[:train_rows]
    x = features[order]
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1)
    dataset = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(labels[order]))
    batch = cfg.batch
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, seed=cfg.train.seed)
    loader = DataLoader(dataset, batch_size=batch.micro_batch_per_worker, sampler=sampler, drop_last=True)
    steps_per_epoch = len(loader) // batch.grad_accumulation
    total = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    torch.manual_seed(cfg.train.seed)
    spec = InputSpec(task="classification", features=[], feature_shape=[x.shape[1]], feature_dtype="float32",
                     classes=list(range(10)))
    model = build_model(cfg.model, spec)
    engine = build_engine(model, ds_config=cfg.deepspeed_config(),
                          lr_plan=LrPlan.from_config(cfg.train, total_steps=total), peak_lr=cfg.train.lr)
    step, window_start, rates = 0, time.perf_counter(), []
    for epoch in range(cfg.train.epochs or 10**9):
        sampler.set_epoch(epoch)
        for index, (inputs, targets) in enumerate(loader):
            if index >= steps_per_epoch * batch.grad_accumulation or step >= total:
                break
            loss = F.cross_entropy(engine(inputs).float(), targets)
            engine.backward(loss)
            engine.step()
            if (index + 1) % batch.grad_accumulation == 0:
                step += 1
                if step % WINDOW_STEPS == 0:
                    now = time.perf_counter()
                    rates.append(WINDOW_STEPS * batch.global_batch / (now - window_start))
                    window_start = now
        if step >= total:
            break
    if rank == 0:
        steady = rates[1:] or rates  # the first window holds warm-up
        print(json.dumps({"steps": step, "samples_per_s": statistics.median(steady),
                          "seconds_in_script": time.perf_counter() - started}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
