"""Live metrics from the workers to the driver: rank 0 sends each logged row, every rank sends what
it restored, through a Ray queue; a driver thread commits rows (metrics.jsonl, then W&B) and tells
the observers (progress bar, epoch lines).

The queue is an actor owned by the driver, so it outlives worker-group restarts; reports to Ray
Train stay for epoch ends and checkpoints only (each is a barrier of all workers).
"""

import queue as std_queue
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import ray
from ray.util.queue import Empty, Queue

from rayspeed.errors import ContinuityError
from rayspeed.runs.metrics_log import MetricsLog
from rayspeed.runs.progress import RunObserver
from rayspeed.trainers.pinned import on_driver_node
from rayspeed.trainers.plan import LoopPlan

POLL_S = 0.25


@dataclass(frozen=True)
class Channel:
    """The workers' end: passed in the train loop config (only the queue is pickled)."""

    queue: Queue
    _unconfirmed: list[ray.ObjectRef] = field(default_factory=list, repr=False)  # at most one

    def __reduce__(self):
        return (Channel, (self.queue,))

    def send_rows(self, rows: list[dict]) -> None:
        """Without waiting for the queue actor (the other ranks would wait for rank 0 in the next
        collective), but only once the previous rows are in: the queue's actor is async, so two
        puts in flight could run out of order."""
        self.flush()  # sent a logging interval ago: long confirmed
        self._unconfirmed.append(self.queue.actor.put_nowait.remote(("rows", rows)))

    def flush(self) -> None:
        """Waits until the queue holds every row sent; before each report, so when the run ends
        (its last report) the driver can read them all."""
        ray.get(self._unconfirmed)
        self._unconfirmed.clear()

    def send_event(self, event: dict) -> None:
        self.queue.put(("event", event))

    def send_checkpoints(self, kept: list[tuple[str, dict]]) -> None:
        """The checkpoints Ray keeps once it committed a new one (for W&B's checkpoint artifacts)."""
        self.queue.put(("checkpoints", kept))


class NullChannel:
    """What ranks other than 0 send rows and checkpoint lists to."""

    def send_rows(self, rows: list[dict]) -> None:
        pass

    def send_checkpoints(self, kept: list[tuple[str, dict]]) -> None:
        pass

    def flush(self) -> None:
        pass


class RunRecorder:
    """The driver's end. Responsibilities: commit each step once (a restarted group repeats steps the
    driver already has), keep W&B behind metrics.jsonl, and say when and where workers restarted."""

    def __init__(self, metrics: MetricsLog, sink, plan: LoopPlan, *, world: int, observers: list[RunObserver]):
        self._metrics, self._sink, self._plan, self._world = metrics, sink, plan, world
        self._observers = observers
        self._queue = Queue(actor_options=on_driver_node())  # never waits for a free CPU
        self.channel = Channel(self._queue)
        self._restored: dict[int, set[int]] = defaultdict(set)  # restored step -> ranks past it
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="rayspeed-recorder", daemon=True)
        self._error: BaseException | None = None
        self._continued_from = 0  # the latest checkpoint step a worker group restored
        self._wandb_failures: set[str] = set()  # "rows", "checkpoints"
        self._gap_error: ContinuityError | None = None

    def start(self) -> None:
        for observer in self._observers:
            observer.on_start(total_steps=self._plan.total_steps, first_step=self._metrics.last_step)
        self._thread.start()

    def stop(self, *, drain: bool = True) -> None:
        """Takes everything still queued (workers confirm their rows before each report, so all of it
        is there once the run ended), then stops.
        Without `drain` (the run was interrupted and its workers may still be sending) it stops after
        the row in hand.

        Raises:
            ContinuityError: steps the plan logs never arrived.
            Whatever stopped the recording (a storage error): the run's record is incomplete.
        """
        if not drain:
            self._abandon.set()
        self._stop.set()
        self._thread.join()
        for observer in self._observers:
            observer.close()
        ray.kill(self._queue.actor)
        if self._error is None and self._gap_error is not None:
            raise self._gap_error
        if self._error is not None:
            raise RuntimeError(f"recording the metrics failed: {self._error!r}") from self._error

    def _drain(self) -> None:
        try:
            self._drain_until_stopped()
        except BaseException as error:  # re-raised by stop(), in the driver's main thread
            self._error = error

    def _drain_until_stopped(self) -> None:
        while not self._abandon.is_set():
            try:
                kind, payload = self._queue.get(timeout=POLL_S)
            except (Empty, std_queue.Empty):
                if self._stop.is_set():
                    return
                continue
            if kind == "rows":
                self._commit(payload)
            elif kind == "checkpoints":
                self._to_wandb("checkpoints", self._sink.log_checkpoints, payload, lost="a checkpoint artifact",
                               then="it is offered again at the next checkpoint")
            else:
                self._on_event(payload)

    def _commit(self, rows: list[dict]) -> None:
        gap = self._gap(rows)
        if gap and self._gap_error is None:  # training goes on (nothing is lost); the run fails at its end
            self._gap_error = ContinuityError(gap)
            print(f"[rayspeed] {gap}", flush=True)
            for observer in self._observers:
                observer.on_note(gap)
        new = self._metrics.append(rows)
        self._to_wandb("rows", self._sink.log, new, lost=f"the rows after step {self._sink.logged_step}",
                       then="metrics.jsonl keeps them, and they are sent again")
        for row in new:
            step = row["step"]
            for observer in self._observers:
                # Step 0 (the score before training) gets its line like an epoch end.
                observer.on_row(row, epoch_end=step == 0 or self._plan.is_epoch_end(step),
                                checkpoint=self._plan.is_checkpoint(step))

    def _to_wandb(self, kind: str, log, payload, *, lost: str, then: str) -> None:
        """W&B follows metrics.jsonl and the checkpoints as long as it can; a failure of each kind is told
        once, and the rest goes on. Rows: when W&B fails (its service had the SIGTERM sent to the driver's
        process group, a network error) the file goes on, and W&B gets every row after the last it took at
        the next commit, or from a resumed run. Checkpoints (a missing object-storage client, one Ray
        deleted meanwhile): the next commit offers the kept ones again."""
        try:
            log(payload)
        except Exception as error:
            if kind not in self._wandb_failures:
                print(f"[rayspeed] W&B did not take {lost} ({error!r}); {then}", flush=True)
            self._wandb_failures.add(kind)

    @property
    def wandb_failed(self) -> bool:
        """W&B refused rows at least once: close it without failing the run."""
        return "rows" in self._wandb_failures

    def _gap(self, rows: list[dict]) -> str | None:
        """Every step the plan logs after the step training continued from must arrive, in order; what
        is missing otherwise (a restart that did not continue where training stopped)."""
        previous = max(self._metrics.last_step, self._continued_from)
        for row in rows:
            if row["step"] <= previous:
                continue  # a repeat after a restart, dropped by the metrics log
            missing = [step for step in range(previous + 1, row["step"]) if self._plan.is_logged(step)]
            if missing:
                return (f"continuity broken: step {row['step']} arrived after step {previous}; steps {missing} "
                        "were never recorded")
            previous = row["step"]
        return None

    def _on_event(self, event: dict) -> None:
        """A rank's first optimizer step after restoring a checkpoint: its step counter and DeepSpeed's."""
        print(f"[rayspeed] rank {event['rank']} restored the checkpoint of step {event['restored_step']}, then "
              f"trained step {event['first_step']} (DeepSpeed global step {event['engine_steps']})",
              flush=True)  # to the run log
        self._continued_from = max(self._continued_from, event["restored_step"])  # a warm start's first step
        ranks = self._restored[event["restored_step"]]
        ranks.add(event["rank"])
        if len(ranks) == self._world:
            del self._restored[event["restored_step"]]
            for observer in self._observers:
                observer.on_note(f"all {self._world} ranks continued after the checkpoint of step "
                                 f"{event['restored_step']}")
