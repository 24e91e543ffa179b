"""DeepSpeed engine construction on the process group Ray Train already initialized."""

import torch
from torch import nn

from rayspeed.config.train import TrainConfig
from rayspeed.trainers.schedule import LrPlan, StepLrScheduler

INPUT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_engine(model: nn.Module, *, ds_config: dict, lr_plan: LrPlan, peak_lr: float):
    """`deepspeed.initialize` wraps Ray's existing process group (gloo or nccl); no launcher, no MPI.

    The lr scheduler is rayspeed's (see `schedule`); DeepSpeed steps it after each optimizer step and
    saves and loads it with its checkpoints. deepspeed is imported here, inside the worker, never in
    the driver (ray-project/ray#50406). Frozen parameters (`model.freeze`) stay out of the optimizer.
    """
    import deepspeed

    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config,
        lr_scheduler=lambda optimizer: StepLrScheduler(optimizer, plan=lr_plan, peak_lr=peak_lr))
    return engine


def set_hyperparameters(optimizer, train: TrainConfig) -> None:
    """Applies the config's weight decay (and SGD momentum) to an optimizer whose state was loaded
    from another run's checkpoint; the lr is the scheduler's."""
    for group in optimizer.param_groups:
        group["weight_decay"] = train.weight_decay
        if "momentum" in group:
            group["momentum"] = train.momentum


@torch.no_grad()
def average_buffers(module: nn.Module, *, world: int) -> None:
    """Averages floating-point buffers (batch norm's running statistics) across ranks. DeepSpeed,
    unlike DDP, does not broadcast buffers: each rank's would drift with its own batches, so
    evaluations and the checkpoint (rank 0's copy) would use different statistics. Collective."""
    import torch.distributed as dist

    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(world)
