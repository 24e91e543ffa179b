"""The `train` section: how long, how big a batch, which optimizer, precision and ZeRO stage."""

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from rayspeed.config.early_stopping import EarlyStoppingConfig
from rayspeed.config.section import Section


class TrainConfig(Section):
    """Optimization settings. Batch sizes are checked against `scaling.num_workers` in `checks`."""

    epochs: PositiveInt | None = None
    """Passes over the training split. Set this or `max_steps`."""
    max_steps: PositiveInt | None = None
    """Optimizer steps to run (each step is one global batch). Set this or `epochs`."""
    micro_batch_per_worker: PositiveInt | None = None
    """Rows each worker feeds forward at a time (DeepSpeed's train_micro_batch_size_per_gpu)."""
    global_batch: PositiveInt | None = None
    """Rows per optimizer step over all workers = micro batch x grad accumulation x workers."""
    grad_accumulation: PositiveInt | None = None
    """Micro batches accumulated before each optimizer step; derived when omitted."""
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate."""
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    """Optimizer; adam/adamw run as torch's implementation (no C++ build)."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay (adamw) or L2 penalty (adam, sgd)."""
    l1: float = Field(0.0, ge=0)
    """L1 penalty: this times the sum of |w| over every weight matrix, conv kernel and embedding (not
    biases or norms) is added to the training loss; needs full parameters on each rank (zero_stage 0-2)."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Classification: this share of each target's probability is spread over all classes (training
    loss only; val and test losses stay plain cross entropy, comparable across runs)."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum; ignored by adam/adamw."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    """Shape after warmup: constant, or linear / cosine decay to `min_lr_ratio` x lr at the last step."""
    warmup_steps: int = Field(0, ge=0)
    """Optimizer steps of linear warmup up to `lr`; 0 starts at `lr`."""
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """Final lr of the linear and cosine schedules as a fraction of `lr`."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value; null disables clipping."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Numeric precision: fp32 on CPU workers; bf16 (usual) or fp16 on GPU workers."""
    zero_stage: Literal[0, 1, 2, 3] = 0
    """DeepSpeed ZeRO stage: 0 plain data parallel, 1 optimizer, 2 +gradients, 3 +parameters sharded."""
    offload: Literal["none", "cpu"] = "none"
    """ZeRO-Offload of optimizer state (and parameters at stage 3) to CPU memory."""
    early_stopping: EarlyStoppingConfig | None = None
    """Stop once the checkpoint score stops improving; null trains to the end."""
    seed: int = 0
    """Seeds model init, data split and shuffling; same seed, same run."""

    @model_validator(mode="after")
    def _one_length(self):
        if (self.epochs is None) == (self.max_steps is None):
            raise ValueError("set exactly one of train.epochs and train.max_steps")
        if self.offload == "cpu" and self.zero_stage == 0:
            raise ValueError("train.offload: cpu needs train.zero_stage 1, 2 or 3")
        if self.l1 and self.zero_stage == 3:
            raise ValueError("train.l1: ZeRO-3 shards every parameter, so no rank holds the weights the penalty "
                             "sums; use zero_stage 0, 1 or 2")
        return self
