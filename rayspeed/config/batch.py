"""Batch math, the single source of truth: global = micro x grad accumulation x workers."""

from dataclasses import dataclass

from rayspeed.config.train import TrainConfig


@dataclass(frozen=True)
class BatchPlan:
    """The three batch numbers DeepSpeed needs, consistent with each other by construction."""

    micro_batch_per_worker: int
    grad_accumulation: int
    global_batch: int


def resolve_batch(train: TrainConfig, *, num_workers: int) -> BatchPlan:
    """Checks the given batch terms against each other and derives the missing ones.

    Raises:
        ValueError: naming the three numbers when they cannot agree.
    """
    micro, accum, total = train.micro_batch_per_worker, train.grad_accumulation, train.global_batch
    if micro is None and total is None:
        raise ValueError("set train.micro_batch_per_worker or train.global_batch (or both)")
    if micro is None:
        accum = accum or 1
        micro = _exact_quotient(total, accum * num_workers, accum=accum, workers=num_workers)
    elif total is None:
        accum = accum or 1
        total = micro * accum * num_workers
    elif accum is None:
        accum = _exact_quotient(total, micro * num_workers, micro=micro, workers=num_workers)
    elif micro * accum * num_workers != total:
        raise ValueError(
            f"train.global_batch ({total}) != train.micro_batch_per_worker ({micro}) x "
            f"train.grad_accumulation ({accum}) x scaling.num_workers ({num_workers}) "
            f"= {micro * accum * num_workers}"
        )
    return BatchPlan(micro_batch_per_worker=micro, grad_accumulation=accum, global_batch=total)


def _exact_quotient(total: int, divisor: int, **terms: int) -> int:
    names = {
        "micro": "train.micro_batch_per_worker",
        "accum": "train.grad_accumulation",
        "workers": "scaling.num_workers",
    }
    if total % divisor:
        product = " x ".join(f"{names[k]} ({v})" for k, v in terms.items())
        raise ValueError(
            f"train.global_batch ({total}) is not a multiple of {product} = {divisor}"
        )
    return total // divisor
