"""The epoch gate: how a Tune trial holds its workers at the end of each epoch until Tune has decided
whether the trial continues, so an early-stopped trial stops at that epoch, with its checkpoint
written and its run summarized, instead of being killed in the middle of the next one.

The trial lets the workers through up to the step of the epoch Tune asked for, or stops them for
good; rank 0 polls that at every epoch end and broadcasts the answer, so every rank leaves the loop
at the same step. Keyed by step: an epoch end a restarted worker group repeats passes at once.
"""

import time
from dataclasses import dataclass

import ray
import torch
import torch.distributed as dist

from rayspeed.trainers.pinned import on_driver_node

POLL_S = 0.1
RELEASE_WAIT_S = 300.0
STOP = "stop"


@ray.remote(num_cpus=0)
class _GateState:
    def __init__(self):
        self.allowed_step, self.stopped = 0, False

    def allow(self, step: int) -> None:
        self.allowed_step = max(self.allowed_step, step)

    def stop(self) -> None:
        self.stopped = True

    def decision(self, step: int) -> str | None:
        return STOP if self.stopped else "continue" if self.allowed_step >= step else None


@dataclass(frozen=True)
class EpochGate:
    """Picklable: created by the trial, passed to the workers in the train loop config."""

    state: ray.actor.ActorHandle

    @classmethod
    def create(cls, name: str) -> "EpochGate":
        """Named after the trial's run (a Ray actor name is unique), and waits until no other gate
        of that name lives: a paused trial's last actor may still be finishing the run when the
        trial resumes. The gate dies with the actor that made it, so a crashed one frees the name.

        Raises:
            TimeoutError: the other gate lived on for RELEASE_WAIT_S.
        """
        deadline = time.monotonic() + RELEASE_WAIT_S
        while True:
            try:
                return cls(_GateState.options(name=name, **on_driver_node()).remote())
            except ValueError:  # the name is taken
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another trial actor still trains run {name}") from None
                time.sleep(1.0)

    def allow(self, step: int) -> None:
        """The trial: Tune wants the epoch after the one that ended at `step`."""
        ray.get(self.state.allow.remote(step))

    def close(self) -> None:
        """The trial: stop the workers at the next epoch end (or now, if they are waiting)."""
        ray.get(self.state.stop.remote())

    def should_stop(self, *, step: int, rank: int, device) -> bool:
        """Every rank, at the epoch end of `step`: rank 0 waits for the trial's answer, all ranks get it."""
        decision = torch.zeros(1, dtype=torch.int32, device=device)
        if rank == 0:
            while (answer := ray.get(self.state.decision.remote(step))) is None:
                time.sleep(POLL_S)
            decision[0] = int(answer == STOP)
        if dist.is_initialized():
            dist.broadcast(decision, src=0)
        return bool(decision.item())

    def shutdown(self) -> None:
        """The trial actor, last: the run is free for the trial's next actor."""
        ray.kill(self.state)
