"""The DeepSpeed config, generated from the schema; a user `deepspeed:` block may only add to it."""

from typing import Any

from rayspeed.config.batch import BatchPlan
from rayspeed.config.train import TrainConfig

OPTIMIZER_TYPES = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}
ZERO_TESTED_OPTIMIZERS = ("adamw", "adam")
# Logging every 2**31 steps silences DeepSpeed's own per-step prints; rayspeed reports metrics itself.
QUIET_STEPS = 2**31 - 1


def deepspeed_config(train: TrainConfig, batch: BatchPlan) -> dict:
    """Builds the DeepSpeed JSON config for `deepspeed.initialize`.

    The learning-rate schedule is not in it: rayspeed passes its own (`trainers.schedule`), which can
    run without warmup and can be re-planned when a finished run is extended.

    Args:
        train: the `train` section.
        batch: the resolved batch sizes.
    """
    return {
        "train_batch_size": batch.global_batch,
        "train_micro_batch_size_per_gpu": batch.micro_batch_per_worker,
        "gradient_accumulation_steps": batch.grad_accumulation,
        "gradient_clipping": train.grad_clip or 0.0,
        "steps_per_print": QUIET_STEPS,
        "optimizer": {"type": OPTIMIZER_TYPES[train.optimizer], "params": _optimizer_params(train)},
        "zero_optimization": _zero(train),
        # ZeRO wraps any torch optimizer; DeepSpeed only insists on a flag for the ones it did not test (SGD).
        "zero_allow_untested_optimizer": train.optimizer not in ZERO_TESTED_OPTIMIZERS,
        "bf16": {"enabled": train.precision == "bf16"},
        "fp16": {"enabled": train.precision == "fp16"},
    }


def _optimizer_params(train: TrainConfig) -> dict:
    params: dict[str, Any] = {"lr": train.lr, "weight_decay": train.weight_decay}
    if train.optimizer == "sgd":
        params["momentum"] = train.momentum
    else:
        # torch_adam: torch's Adam(W) instead of DeepSpeed's FusedAdam, which JIT-compiles C++ for minutes.
        params.update(torch_adam=True, adam_w_mode=train.optimizer == "adamw")
    return params


def _zero(train: TrainConfig) -> dict:
    zero: dict[str, Any] = {"stage": train.zero_stage}
    if train.offload == "cpu":
        zero["offload_optimizer"] = {"device": "cpu"}
        if train.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu"}
    return zero


def merge_user_block(generated: dict, user: dict, path: str = "deepspeed") -> dict:
    """Adds the user's settings to the generated config; a different value for a generated key is an error.

    Raises:
        ValueError: naming each contradicting key, its schema value and the block's value.
    """
    merged = dict(generated)
    conflicts: list[str] = []
    for key, value in user.items():
        where = f"{path}.{key}"
        if key not in generated:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(generated[key], dict):
            try:
                merged[key] = merge_user_block(generated[key], value, where)
            except ValueError as error:
                conflicts.append(str(error))
        elif value != generated[key]:
            conflicts.append(
                f"{where}: {value!r} contradicts the value the schema generates ({generated[key]!r}); "
                "set it through the schema fields (train.*) instead"
            )
    if conflicts:
        raise ValueError("; ".join(conflicts))
    return merged
