"""Loss, accuracy and confusion matrix over a whole split, each row counted once across ranks.

Every rank reads the full split but computes only the rows whose hash falls to it, so the result
does not depend on the order Ray Data yields blocks in; sums are then all-reduced.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

EVAL_BATCH = 512


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    rows: int
    confusion: list[list[int]]


@torch.no_grad()
def evaluate(engine, iterator, *, rank: int, world: int, num_classes: int, device, dtype) -> Evaluation:
    """Runs every batch on every rank (ZeRO-3 needs each forward on all ranks), masked to this rank's rows."""
    engine.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, rows
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for batch in iterator.iter_torch_batches(batch_size=EVAL_BATCH, device=device):
        mine = batch["row_hash"] % world == rank
        labels = batch["label"][mine]
        logits = engine(batch["features"][mine].to(dtype)).float()
        totals[0] += F.cross_entropy(logits, labels, reduction="sum")
        totals[1] += labels.numel()
        confusion += torch.bincount(labels * num_classes + logits.argmax(dim=1),
                                    minlength=num_classes * num_classes)
    dist.all_reduce(totals)
    dist.all_reduce(confusion)
    engine.train()
    rows = int(totals[1].item())
    matrix = confusion.view(num_classes, num_classes)
    return Evaluation(loss=(totals[0] / max(rows, 1)).item(), accuracy=matrix.diag().sum().item() / max(rows, 1),
                      rows=rows, confusion=matrix.tolist())
