"""Run control: a graceful stop on SIGTERM and a watchdog for ranks that stop making progress.

A small actor owned by the driver (it outlives worker-group restarts) answers every rank, once per
optimizer step, whether to stop after that step. The first answer given for a step is the answer for
every rank, so all ranks stop at the same step, write the checkpoint there (a collective) and leave
the loop. Each rank asks one step ahead, right after fetching the batch, so the answer is there by
the time the step ends and the question doubles as the rank's heartbeat ("fetched the batch of step
s"). A driver thread forwards a stop request to the actor, gives up after the grace period (a
second SIGTERM to the driver, which then interrupts), and watches the heartbeats.

A rank that hangs stalls every rank (the others wait in a collective), so the watchdog acts when no
rank made progress for `run.hang_timeout_s`: it names the ranks that do not answer Ray (a stopped or
wedged process) or, when all answer, those furthest behind, and kills their worker actors. Ray Train
then counts a worker failure and `run.max_failures` restarts the group from the newest checkpoint,
instead of every rank waiting for the 30-minute collective timeout.
"""

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from rayspeed.trainers.pinned import on_driver_node

WATCH_S = 2.0
PROBE_TIMEOUT_S = 5.0


@ray.remote(num_cpus=0)
class _ControlState:
    def __init__(self):
        self.requested = False
        self.stop_step: int | None = None
        self.highest_continued = 0  # the highest step some rank was told to continue after
        self.ranks: dict[int, tuple[int, float, object]] = {}  # rank -> (step fetched, when, worker actor)

    def request_stop(self) -> None:
        self.requested = True

    def ask(self, rank: int, *, fetched: int, step: int, worker) -> bool:
        """Rank `rank` fetched the batch of step `fetched`; stop after step `step`?"""
        self.ranks[rank] = (fetched, time.monotonic(), worker)
        if self.requested and self.stop_step is None:
            self.stop_step = max(step, self.highest_continued + 1)  # no rank was told otherwise for it
        if self.stop_step is not None and step >= self.stop_step:
            return True
        self.highest_continued = max(self.highest_continued, step)
        return False

    def leave(self, rank: int) -> None:
        """The rank waits for something other than its peers (a Tune decision) or has finished."""
        self.ranks.pop(rank, None)

    def forget(self) -> None:
        """After a hang ended the attempt: the watch re-arms with the next attempt's first beats."""
        self.ranks = {}

    def progress(self) -> dict[int, tuple[int, float, object]]:
        """Per rank: the step whose batch it fetched last, seconds since, its worker actor."""
        now = time.monotonic()
        return {rank: (step, now - when, worker) for rank, (step, when, worker) in self.ranks.items()}


@dataclass
class StepControl:
    """The workers' end: picklable, passed in the train loop config."""

    state: ray.actor.ActorHandle

    def __post_init__(self):
        self._answers: dict[int, ray.ObjectRef] = {}
        self._worker = None  # this rank's worker actor, which the watchdog would kill

    def __getstate__(self):
        return {"state": self.state}

    def __setstate__(self, values):
        self.__init__(values["state"])

    def fetched(self, step: int, *, rank: int) -> None:
        """The batch of `step` is here: ask whether to stop after the next step (and beat)."""
        self._ask(rank, fetched=step, step=step + 1)

    def stop_after(self, step: int, *, rank: int) -> bool:
        """At the end of `step`; the same answer on every rank."""
        answer = self._answers.pop(step, None) or self._ask(rank, fetched=step, step=step, keep=False)
        return ray.get(answer)

    def leave(self, *, rank: int) -> None:
        ray.get(self.state.leave.remote(rank))

    def _ask(self, rank: int, *, fetched: int, step: int, keep: bool = True) -> ray.ObjectRef:
        self._worker = self._worker or ray.get_runtime_context().current_actor
        answer = self.state.ask.remote(rank, fetched=fetched, step=step, worker=self._worker)
        if keep:
            self._answers[step] = answer
        return answer


class RunControl:
    """The driver's end: the actor, and a thread forwarding a stop request and watching for hangs."""

    def __init__(self, *, stop_requested: threading.Event | None, grace_s: float, hang_timeout_s: float | None,
                 note: Callable[[str], None]):
        self._state = _ControlState.options(**on_driver_node()).remote()
        self.step_control = StepControl(self._state)
        self._stop_requested = stop_requested or threading.Event()
        self._grace_s, self._hang_timeout_s, self._note = grace_s, hang_timeout_s, note
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rayspeed-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        ray.kill(self._state)

    def _watch(self) -> None:
        deadline = None
        while not self._done.wait(WATCH_S):
            if deadline is None and self._stop_requested.is_set():
                self._state.request_stop.remote()
                deadline = time.monotonic() + self._grace_s
                self._note(f"stop requested: checkpointing after the next step (grace period {self._grace_s:g} s)")
            if deadline is not None and time.monotonic() > deadline:
                self._note(f"no checkpoint within the grace period of {self._grace_s:g} s (run.stop_grace_s): "
                           "interrupting")
                os.kill(os.getpid(), signal.SIGTERM)  # the second one interrupts the run
                return
            if self._hang_timeout_s is not None:
                self._end_a_hang(ray.get(self._state.progress.remote()))

    def _end_a_hang(self, progress: dict) -> None:
        if not progress or min(age for _, age, _ in progress.values()) < self._hang_timeout_s:
            return
        alive, unresponsive = _probe({rank: worker for rank, (_, _, worker) in progress.items()})
        if not alive:  # the attempt is over (a restart is under way)
            return
        lowest = min(progress[rank][0] for rank in alive)
        hung = unresponsive or [rank for rank in alive if progress[rank][0] == lowest]
        why = "does not answer Ray" if unresponsive else f"is furthest behind (batch of step {lowest})"
        self._note(f"no rank made progress for {self._hang_timeout_s:g} s (run.hang_timeout_s): "
                   f"rank {', '.join(map(str, hung))} {why}; ending this attempt "
                   f"({', '.join(f'rank {r} at step {progress[r][0]}' for r in sorted(progress))})")
        for rank in hung:
            ray.kill(progress[rank][2])
        ray.get(self._state.forget.remote())


def _probe(workers: dict[int, object]) -> tuple[list[int], list[int]]:
    """(ranks whose worker actor lives, those of them that do not answer within PROBE_TIMEOUT_S)."""
    answers = {rank: worker.__ray_ready__.remote() for rank, worker in workers.items()}
    alive, unresponsive = [], []
    for rank, answer in sorted(answers.items()):
        try:
            ray.get(answer, timeout=PROBE_TIMEOUT_S)
            alive.append(rank)
        except GetTimeoutError:
            alive.append(rank)
            unresponsive.append(rank)
        except RayActorError:
            pass
    return alive, unresponsive
