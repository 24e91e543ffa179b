"""The train loop's batch stream, pure (no Ray): epochs in order, the next epoch opened while the
current one's last step still runs, a failure raised where the batch is awaited, and a stop."""

import threading
import time

import pytest

from rayspeed.trainers.batch_stream import BatchStream


def test_epochs_arrive_in_order_and_the_next_opens_before_the_last_step_of_the_current_ends():
    opened: dict[int, float] = {}

    def open_epoch(epoch: int):
        opened[epoch] = time.monotonic()
        return [f"{epoch}.{index}" for index in range(3)]

    stream = BatchStream(open_epoch, range(2, 5))
    seen = []
    for epoch in range(2, 5):
        for wait_s, batch in stream.next_epoch():
            assert wait_s >= 0
            seen.append(batch)
        if epoch < 4:
            last_step_ended = time.monotonic()
            time.sleep(0.3)  # the epoch's validation, report and checkpoint
            assert opened[epoch + 1] < last_step_ended + 0.3
    assert seen == [f"{epoch}.{index}" for epoch in range(2, 5) for index in range(3)]


def test_a_failure_to_read_is_raised_where_the_batch_is_awaited():
    def open_epoch(epoch: int):
        yield "first"
        raise OSError("the file went away")

    stream = BatchStream(open_epoch, range(1))
    batches = stream.next_epoch()
    assert next(batches)[1] == "first"
    with pytest.raises(OSError, match="the file went away"):
        next(batches)


def test_a_run_that_stops_early_stops_the_fetching_thread():
    produced = []

    def open_epoch(epoch: int):
        for index in range(1000):
            produced.append(index)
            yield index

    stream = BatchStream(open_epoch, range(10), ahead=2)
    next(stream.next_epoch())
    stream.close()
    deadline = time.monotonic() + 5
    while any(thread.name == "rayspeed-batches" for thread in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(thread.name == "rayspeed-batches" for thread in threading.enumerate())
    assert len(produced) <= 5  # a batch or two ahead, never the epoch
