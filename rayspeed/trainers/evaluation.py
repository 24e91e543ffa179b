"""Task metrics over a whole split, each row counted once across ranks.

Every rank reads the full split but computes only the rows whose hash falls to it, so the result
does not depend on the order Ray Data yields blocks in; the task's totals are then all-reduced.
"""

import torch
import torch.distributed as dist

from rayspeed.trainers.tasks import Task

EVAL_ROWS = 512  # per batch read; language models read micro batches x world (logits per token are large)


@torch.no_grad()
def evaluate(engine, iterator, *, task: Task, split: str, rank: int, world: int, device, dtype, batch_rows: int,
             with_details: bool = False) -> dict:
    """Runs every batch on every rank (ZeRO-3 needs each forward on all ranks), masked to this rank's rows."""
    engine.eval()
    totals = task.new_totals(device=device)
    for batch in iterator.iter_torch_batches(batch_size=batch_rows, device=device):
        mine = batch["row_hash"] % world == rank
        rows = {name: values[mine] for name, values in batch.items()}
        task.add_to_totals(totals, engine(*task.inputs(rows, dtype=dtype)), rows)
    dist.all_reduce(totals)
    engine.train()
    return task.metrics(totals, split=split, with_details=with_details)
