"""DeepSpeed engine construction on the process group Ray Train already initialized."""

import torch
from torch import nn

INPUT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_engine(model: nn.Module, *, ds_config: dict):
    """`deepspeed.initialize` wraps Ray's existing process group (gloo or nccl); no launcher, no MPI.

    deepspeed is imported here, inside the worker, never in the driver (ray-project/ray#50406).
    """
    import deepspeed

    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                           config=ds_config)
    return engine
