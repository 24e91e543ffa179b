"""Run control with a real actor in the session cluster: the stop decision every rank gets (ranks ask
one step ahead and at different times, and still all stop after the same step), and the end of the
grace period."""

import signal
import threading
import time

import pytest
import ray

from rayspeed.trainers.run_control import RunControl, _ControlState

pytestmark = pytest.mark.ray


def test_ranks_asking_at_different_times_all_stop_after_the_same_step(ray_session):
    state = _ControlState.remote()
    worker, attempt = "a worker handle", 0

    def ask(rank: int, step: int) -> bool:
        return ray.get(state.ask.remote(rank, attempt=attempt, fetched=step - 1, step=step, worker=worker))

    assert not ask(0, 5) and not ask(0, 6)  # rank 0 runs ahead: it asked for step 6 already
    state.request_stop.remote()
    assert not ask(1, 5)  # rank 1 is told what rank 0 was told for steps 5 and 6
    assert not ask(1, 6)
    assert ask(1, 7) and ask(0, 7)  # the first step nobody was told to continue after
    assert ask(0, 8) and ask(1, 8)
    assert not ask(0, 3)  # a group restarted from the same checkpoint replays steps up to the stop step
    progress = ray.get(state.progress.remote())
    assert {rank: step for rank, (step, _, _) in progress.items()} == {0: 2, 1: 7}
    state.leave.remote(1)
    assert set(ray.get(state.progress.remote())) == {0}

    attempt = 4  # a group restarted from the checkpoint of step 4 is told afresh, still all alike
    assert ask(1, 5) and ask(0, 5)
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
        assert notes == ["stop requested: checkpointing after the next step (grace period 0.5 s)",
                         "no checkpoint within the grace period of 0.5 s (run.stop_grace_s): interrupting"]
    finally:
        control.close()
        signal.signal(signal.SIGTERM, previous)
