"""Run control with a real actor in the session cluster: the stop decision every rank gets (ranks ask
ahead and at different times, and still all stop after the same step), how many steps a rank may
train between questions, and the end of the grace period."""

import signal
import threading
import time

import pytest
import ray

from rayspeed.trainers.run_control import MAX_STEPS_PER_ASK, RunControl, _ControlState

pytestmark = pytest.mark.ray


def test_ranks_asking_at_different_times_all_stop_after_the_same_step(ray_session):
    state = _ControlState.remote(ask_every_s=0)  # one step per question, whatever the pace
    attempt = 0

    def ask(rank: int, first: int) -> tuple[int | None, int]:
        return ray.get(state.ask.remote(rank, attempt=attempt, fetched=first - 1, first=first,
                                        worker=f"worker {rank}"))

    assert ask(0, 5) == (None, 5) and ask(0, 6) == (None, 6)  # rank 0 runs ahead: it may finish step 6
    state.request_stop.remote()
    assert ask(1, 5) == (7, 4)  # rank 1 trains steps 5 and 6 as rank 0 may, and stops after step 7
    assert ask(0, 7) == (7, 6)
    assert ask(0, 3) == (7, 2)  # a group restarted from the same checkpoint replays steps up to the stop step
    progress = ray.get(state.progress.remote())
    assert {rank: (step, worker) for rank, (step, _, worker) in progress.items()} == {
        0: (2, "worker 0"), 1: (4, "worker 1")}
    state.leave.remote(1)
    assert set(ray.get(state.progress.remote())) == {0}

    attempt = 4  # a group restarted from the checkpoint of step 4 is told afresh, still all alike
    assert ask(1, 5) == (5, 4) and ask(0, 5) == (5, 4)
    ray.kill(state)


def test_a_fast_rank_asks_every_few_steps_and_a_stop_waits_for_the_steps_allowed(ray_session):
    state = _ControlState.remote(ask_every_s=60.0)

    def ask(rank: int, fetched: int, first: int) -> tuple[int | None, int]:
        return ray.get(state.ask.remote(rank, attempt=0, fetched=fetched, first=first, worker=None))

    assert ask(0, 1, 1) == (None, 1)  # its pace is not known yet
    stop, allowed = ask(0, 1001, 2)  # 1000 steps in far less than a minute: the most steps per question
    assert stop is None and allowed == MAX_STEPS_PER_ASK
    assert ask(1, 1, 1) == (None, 1)
    state.request_stop.remote()
    assert ask(1, 1, 2) == (MAX_STEPS_PER_ASK + 1, 1)  # rank 0 may pass every step up to there
    ray.kill(state)


def test_a_stop_that_finds_no_step_within_the_grace_period_interrupts_the_run(ray_session):
    """No rank asks (the workers are still starting): after the grace period the run sends itself the
    second SIGTERM, which the CLI's handler turns into an interrupt."""
    received, notes = threading.Event(), []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.set())
    requested = threading.Event()
    control = RunControl(stop_requested=requested, grace_s=0.5, hang_timeout_s=None, note=notes.append)
    try:
        control.start()
        requested.set()
        deadline = time.monotonic() + 30
        while not received.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)  # the handler runs in this (the main) thread between these sleeps
        assert received.is_set()
        assert notes == ["stop requested: checkpointing within about 0.5 s of training (grace period 0.5 s)",
                         "no checkpoint within the grace period of 0.5 s (run.stop_grace_s): interrupting"]
    finally:
        control.close()
        signal.signal(signal.SIGTERM, previous)
