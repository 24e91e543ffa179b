"""Keeps the terminal for people: while a verb runs, everything written to file descriptors 1 and 2
(Ray, Ray Data, DeepSpeed, worker output Ray forwards, C++ logs, warnings) goes to the run's log
file; rayspeed's own lines go to the terminal through the `Terminal` this yields.

Redirecting the descriptors, not just `sys.stdout`, also catches output written by child processes
(an embedded Ray's daemons, W&B's service) and by loggers that captured the stream at import time.
"""

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rayspeed.runs.layout import LOG_FILE, local_run_dir


@dataclass(frozen=True)
class Terminal:
    """rayspeed's own output streams, and whether they are an interactive terminal."""

    out: TextIO
    err: TextIO
    interactive: bool

    def say(self, line: str) -> None:
        print(f"[rayspeed] {line}", file=self.out, flush=True)


@contextlib.contextmanager
def capture_output(log_path: Path, *, verbose: bool) -> Iterator[Terminal]:
    """Sends descriptors 1 and 2 to `log_path` (appending) for the duration of the block.

    Args:
        log_path: the run's log file.
        verbose: also copy everything captured to the terminal's stderr.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    out = io.TextIOWrapper(os.fdopen(saved_out, "wb", buffering=0), write_through=True)
    err = io.TextIOWrapper(os.fdopen(saved_err, "wb", buffering=0), write_through=True)
    terminal = Terminal(out=out, err=err, interactive=out.isatty())
    log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed in the finally below
    copier = _Copier(log, err) if verbose else None
    target = copier.write_end if copier else log.fileno()
    os.dup2(target, 1)
    os.dup2(target, 2)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        if copier:
            copier.close()
        log.close()


@contextlib.contextmanager
def python_stderr_to(stream: TextIO) -> Iterator[None]:
    """Points `sys.stderr` (not descriptor 2) at `stream`: progress bars that resolve sys.stderr when
    they start (Ray Data's tqdm) reach the terminal while loggers keep writing to the log."""
    saved = sys.stderr
    sys.stderr = stream
    try:
        yield
    finally:
        sys.stderr = saved


class _Copier:
    """A pipe whose reader thread writes everything to the log and to the terminal (--verbose)."""

    def __init__(self, log, terminal: TextIO):
        self._read_end, self.write_end = os.pipe()
        self._log, self._terminal = log, terminal
        self._thread = threading.Thread(target=self._pump, name="rayspeed-log-copier", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while chunk := os.read(self._read_end, 65536):
            self._log.write(chunk)
            self._terminal.buffer.write(chunk)

    def close(self) -> None:
        os.close(self.write_end)  # descriptors 1 and 2 were pointed back already: the reader sees EOF
        self._thread.join(timeout=5)
        if not self._thread.is_alive():  # a child (W&B's service) may still hold the pipe: leave it open
            os.close(self._read_end)


def run_log_path(storage) -> Path:
    """Where the verb writes the run log: in the run directory when it is local, else next to the
    local W&B files (and copied into the run directory by `keep_log`)."""
    if storage.is_local():
        return Path(storage.join(LOG_FILE))
    return local_run_dir(storage.name) / LOG_FILE


def keep_log(storage, path: Path) -> None:
    """Copies a locally written run log into object storage (a no-op when it is already there)."""
    if not storage.is_local() and path.exists():
        storage.write(path.read_bytes(), LOG_FILE)
