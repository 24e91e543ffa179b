"""The epoch gate: how a Tune trial holds its workers at the end of each epoch until Tune has decided
whether the trial continues, so an early-stopped trial stops at that epoch, with its checkpoint
written and its run summarized, instead of being killed in the middle of the next one.

The trial (the Train driver) opens the gate once per epoch or closes it for good; rank 0 waits at
it and broadcasts the answer, so every rank leaves the loop at the same step.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist
from ray.util.queue import Queue

CONTINUE, STOP = "continue", "stop"


@dataclass(frozen=True)
class EpochGate:
    """Picklable: created by the trial, passed to the workers in the train loop config."""

    queue: Queue

    @classmethod
    def create(cls) -> "EpochGate":
        return cls(Queue(actor_options={"num_cpus": 0}))

    def open(self) -> None:
        """The trial: let the workers train one more epoch."""
        self.queue.put(CONTINUE)

    def close(self) -> None:
        """The trial: stop the workers at the next epoch end (or now, if they are waiting)."""
        self.queue.put(STOP)

    def should_stop(self, *, rank: int, device) -> bool:
        """Every rank, at an epoch end: rank 0 waits for the trial's answer and all ranks get it."""
        decision = torch.zeros(1, dtype=torch.int32, device=device)
        if rank == 0:
            decision[0] = int(self.queue.get(block=True) == STOP)
        if dist.is_initialized():
            dist.broadcast(decision, src=0)
        return bool(decision.item())

    def shutdown(self) -> None:
        self.queue.shutdown(force=True)
