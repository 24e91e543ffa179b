"""Run control: a graceful stop on SIGTERM and a watchdog for ranks that stop making progress.

A small actor owned by the driver (it outlives worker-group restarts) tells each rank how many steps
it may train before asking again, about every ASK_EVERY_S seconds whatever the step time (an actor
call per step costs a toy model's step a tenth of its time), or, once a stop was requested, after
which step to stop. The stop step is the first one no rank was allowed to pass without asking, so
all ranks stop at the same step, write the checkpoint there (a collective) and leave the loop.
Each rank asks while its last allowed step trains, so the answer is there by the time it ends, and
the question doubles as the rank's heartbeat ("fetched the batch of step s"). A driver thread
forwards a stop request to the actor, gives up after the grace period (a second SIGTERM to the
driver, which then interrupts), and watches the heartbeats.

A rank that hangs stalls every rank (the others wait in a collective), so the watchdog acts when no
rank made progress for `run.hang_timeout_s`: it names the ranks that do not answer Ray (a stopped or
wedged process) or, when all answer, those furthest behind, and kills their worker actors. Ray Train
then counts a worker failure and `run.max_failures` restarts the group from the newest checkpoint,
instead of every rank waiting for the 30-minute collective timeout.
"""

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray
from ray.exceptions import RayActorError

from rayspeed.trainers.pinned import on_driver_node

WATCH_S = 2.0
PROBE_TIMEOUT_S = 5.0
INTERRUPTED = -1.0  # the grace period passed and the run was interrupted
ASK_EVERY_S = 0.5  # how often a rank asks (and beats), so also how long a stop request may wait
MAX_STEPS_PER_ASK = 1024


@ray.remote(num_cpus=0)
class _ControlState:
    def __init__(self, ask_every_s: float = ASK_EVERY_S):
        self.ask_every_s = ask_every_s
        self.requested = False
        self.attempt = -1  # the checkpoint step the asking worker group restored
        self.stop_step: int | None = None
        self.highest_allowed = 0  # the highest step some rank of the group may finish without asking
        self.ranks: dict[int, tuple[int, float]] = {}  # rank -> (step fetched, when)
        self.workers: dict[int, object] = {}  # rank -> its worker actor (sent with the rank's first question)

    def request_stop(self) -> None:
        self.requested = True

    def ask(self, rank: int, *, attempt: int, fetched: int, first: int, worker=None) -> tuple[int | None, int]:
        """Rank `rank` of the group that restored step `attempt` has the batch of step `fetched` and
        asks about the steps from `first` on. Returns (the step to stop after, or None; the last step
        it may finish without asking again). A restarted group from a newer checkpoint was allowed
        nothing yet, so its stop is decided afresh (one from the same checkpoint keeps the decision)."""
        if attempt > self.attempt:
            self.attempt, self.highest_allowed, self.stop_step = attempt, attempt, None
        now = time.monotonic()
        steps = self._steps_per_ask(self.ranks.get(rank), fetched=fetched, now=now)
        self.ranks[rank] = (fetched, now)
        if worker is not None:
            self.workers[rank] = worker
        if self.requested and self.stop_step is None:
            self.stop_step = max(first, self.highest_allowed + 1)  # no rank was allowed to pass it
        if self.stop_step is not None:
            return self.stop_step, first - 1
        allowed = ((first - 1) // steps + 1) * steps  # a multiple: ranks ask at the same steps
        self.highest_allowed = max(self.highest_allowed, allowed)
        return None, allowed

    def _steps_per_ask(self, last: tuple[int, float] | None, *, fetched: int, now: float) -> int:
        """A power of two of steps that take about `ask_every_s`, from the rank's pace since it last asked."""
        if last is None or fetched <= last[0] or now <= last[1]:
            return 1
        steps = self.ask_every_s * (fetched - last[0]) / (now - last[1])
        return min(MAX_STEPS_PER_ASK, 2 ** max(0, math.floor(math.log2(steps)))) if steps >= 1 else 1

    def leave(self, rank: int) -> None:
        """The rank waits for something other than its peers (a Tune decision) or has finished."""
        self.ranks.pop(rank, None)

    def forget(self) -> None:
        """After a hang ended the attempt: the watch re-arms with the next attempt's first beats."""
        self.ranks = {}

    def progress(self) -> dict[int, tuple[int, float, object]]:
        """Per rank: the step whose batch it fetched when it last asked, seconds since, its worker actor."""
        now = time.monotonic()
        return {rank: (step, now - when, self.workers[rank]) for rank, (step, when) in self.ranks.items()}


@dataclass
class StepControl:
    """The workers' end: passed in the train loop config (only the actor handle is pickled)."""

    state: ray.actor.ActorHandle
    attempt: int = 0  # the checkpoint step this rank restored
    _allowed: int = field(default=0, repr=False)  # the last step it may finish without asking
    _stop_at: int | None = field(default=None, repr=False)
    _answer: ray.ObjectRef | None = field(default=None, repr=False)  # the pending answer
    _worker: object = field(default=None, repr=False)  # this rank's worker actor, which the watchdog kills

    def __reduce__(self):
        return (StepControl, (self.state,))

    def batch_ready(self, step: int, *, rank: int) -> None:
        """The batch of `step` is here: at the last allowed step (or the first), ask about the next ones."""
        if self._answer is None and self._stop_at is None and self._allowed <= step:
            first = max(self._allowed + 1, step)
            worker = None
            if self._worker is None:
                worker = self._worker = ray.get_runtime_context().current_actor
            self._answer = self.state.ask.remote(rank, attempt=self.attempt, fetched=step, first=first,
                                                 worker=worker)

    def stop_after(self, step: int) -> bool:
        """At the end of `step`; the same answer on every rank."""
        if self._stop_at is None and step > self._allowed:
            self._stop_at, self._allowed = ray.get(self._answer)
            self._answer = None
        return self._stop_at is not None and step >= self._stop_at

    def leave(self, *, rank: int) -> None:
        ray.get(self.state.leave.remote(rank))


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
        deadline, failed = None, False
        while not self._done.wait(WATCH_S):
            try:
                deadline = self._watch_once(deadline)
            except Exception as error:  # the next round tries again; say it once
                if not failed:
                    print(f"[rayspeed] run control: {error!r}", flush=True)
                failed = True
            if deadline == INTERRUPTED:
                return

    def _watch_once(self, deadline: float | None) -> float | None:
        """One round: forward a stop request, end the grace period, look for a hang. Returns the
        grace period's deadline (INTERRUPTED once it passed)."""
        if deadline is None and self._stop_requested.is_set():
            self._state.request_stop.remote()
            deadline = time.monotonic() + self._grace_s
            self._note(f"stop requested: checkpointing within about {ASK_EVERY_S:g} s of training "
                       f"(grace period {self._grace_s:g} s)")
        if deadline is not None and time.monotonic() > deadline:
            self._note(f"no checkpoint within the grace period of {self._grace_s:g} s (run.stop_grace_s): "
                       "interrupting")
            os.kill(os.getpid(), signal.SIGTERM)  # the second one interrupts the run
            return INTERRUPTED
        if self._hang_timeout_s is not None:
            self._end_a_hang()
        return deadline

    def _end_a_hang(self) -> None:
        progress = self._stalled_progress()
        if progress is None:
            return
        alive, unresponsive = _probe({rank: worker for rank, (_, _, worker) in progress.items()})
        if not alive or self._stalled_progress() is None:  # a restart is under way, or a rank moved on
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


    def _stalled_progress(self) -> dict | None:
        """Every rank's progress when none has made any for `hang_timeout_s`, else None."""
        progress = ray.get(self._state.progress.remote())
        if not progress or min(age for _, age, _ in progress.values()) < self._hang_timeout_s:
            return None
        return progress


def _probe(workers: dict[int, object]) -> tuple[list[int], list[int]]:
    """(ranks whose worker actor lives, those of them that do not answer within PROBE_TIMEOUT_S)."""
    answers = {rank: worker.__ray_ready__.remote() for rank, worker in sorted(workers.items())}
    ready, _ = ray.wait(list(answers.values()), num_returns=len(answers), timeout=PROBE_TIMEOUT_S)
    alive, unresponsive = [], []
    for rank, answer in answers.items():
        if answer not in ready:
            alive.append(rank)
            unresponsive.append(rank)
            continue
        try:
            ray.get(answer)
            alive.append(rank)
        except RayActorError:
            pass
    return alive, unresponsive
