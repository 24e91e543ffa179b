"""The train shard's batches, epoch after epoch, fetched by a thread a few batches ahead.

Each epoch of a streamed split is a new Ray Data execution, whose first batch takes a tenth of a
second or more to arrive. Fetched in line, that wait falls between the last step of an epoch (its
validation, report and checkpoint) and the first step of the next; fetched by this thread, the next
epoch's stream starts as soon as the current one is read, while those run."""

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

POLL_S = 0.1
_END = object()  # the epoch's last batch was read


class BatchStream:
    """`next_epoch()` yields (seconds waited, batch) of each epoch in `epochs`, in order."""

    def __init__(self, open_epoch: Callable[[int], Iterable], epochs: range, *, ahead: int = 2):
        self._open_epoch, self._epochs = open_epoch, epochs
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._fetch, name="rayspeed-batches", daemon=True)
        self._thread.start()

    def next_epoch(self) -> Iterator[tuple[float, dict]]:
        while True:
            started = time.perf_counter()
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                return
            yield time.perf_counter() - started, item

    def close(self) -> None:
        """Stops fetching (a run that stops before its last epoch). Not joined: the thread may wait in
        a stream whose other ranks stopped reading; it ends with the worker."""
        self._closed.set()

    def _fetch(self) -> None:
        try:
            for epoch in self._epochs:
                for batch in self._open_epoch(epoch):
                    if not self._put(batch):
                        return
                if not self._put(_END):
                    return
        except BaseException as error:  # the training thread raises it where it waits for the batch
            self._put(error)

    def _put(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False
