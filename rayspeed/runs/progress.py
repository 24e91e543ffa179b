"""What a person watching a run sees: one line per epoch end and per checkpoint, and on a terminal
a live bar (step/total, epoch, loss, latest val metric, samples/s, ETA) under those lines."""

import contextlib
import math
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rayspeed.runs.output import Terminal, python_stderr_to

LINE_METRICS = ("val_loss", "val_accuracy", "val_f1", "val_mae", "val_perplexity", "test_loss", "test_accuracy",
                "test_f1", "test_mae", "test_perplexity")


class RunObserver(Protocol):
    """Told about a run as the driver records it; rank 0's rows, in step order, each step once."""

    def preparing_data(self) -> contextlib.AbstractContextManager: ...

    def on_start(self, *, total_steps: int, first_step: int) -> None: ...

    def on_row(self, row: dict, *, epoch_end: bool, checkpoint: bool) -> None: ...

    def on_note(self, line: str) -> None: ...

    def close(self) -> None: ...


class ProgressDisplay:
    """A RunObserver that writes to the terminal: lines always, the live bar only when interactive."""

    def __init__(self, terminal: Terminal):
        self._terminal = terminal
        self._console = Console(file=terminal.out, force_terminal=terminal.interactive, highlight=False,
                                soft_wrap=True)
        self._bar: Progress | None = None
        self._task = None
        self._last_val = ""
        self._total_steps: int | None = None

    @contextlib.contextmanager
    def preparing_data(self):
        """On a terminal, Ray Data's own progress bars show while the data is read and prepared."""
        if not self._terminal.interactive:
            yield
            return
        from ray.data import DataContext  # only here: the runs package imports no Ray at import time

        context = DataContext.get_current()
        context.enable_progress_bars, context.use_ray_tqdm = True, False
        try:
            with python_stderr_to(self._terminal.err):
                yield
        finally:
            context.enable_progress_bars = False

    def on_start(self, *, total_steps: int, first_step: int) -> None:
        self._total_steps = total_steps
        if not self._terminal.interactive:
            return
        self._bar = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=self._console,
                             transient=True)
        self._task = self._bar.add_task("train", total=total_steps, completed=first_step, info="")
        self._bar.start()

    def on_row(self, row: dict, *, epoch_end: bool, checkpoint: bool) -> None:
        if "val_accuracy" in row:
            self._last_val = f"val_acc {row['val_accuracy']:.4f}"
        elif "val_mae" in row:
            self._last_val = f"val_mae {row['val_mae']:.4g}"
        elif "val_perplexity" in row:
            self._last_val = f"val_ppl {row['val_perplexity']:.3f}"
        elif "val_loss" in row:
            self._last_val = f"val_loss {row['val_loss']:.4f}"
        if self._bar is not None:
            trained = f"loss {row['train_loss']:.4f}" if "train_loss" in row else ""
            info = " | ".join(part for part in (f"epoch {row['epoch']:.2f}", trained, self._last_val, _speed(row))
                              if part)
            self._bar.update(self._task, completed=row["step"], info=info)
        if epoch_end or checkpoint:
            self._line(progress_line(row, total_steps=self._total_steps, checkpoint=checkpoint))

    def on_note(self, line: str) -> None:
        self._line(f"[rayspeed] {line}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False)
        else:
            print(text, file=self._terminal.out, flush=True)


def progress_line(row: dict, *, total_steps: int | None, checkpoint: bool) -> str:
    step = f"step {row['step']}/{total_steps}" if total_steps else f"step {row['step']}"
    parts = [step, f"epoch {row['epoch']:.2f}"]
    if "train_loss" in row:
        parts.append(f"train_loss {row['train_loss']:.4f}")
    else:  # step 0: the score of the weights init_from gave, before training
        parts[0] += " (before training)"
    parts += [f"{key} {row[key]:.4f}" for key in LINE_METRICS if key in row and not math.isnan(row[key])]
    parts += [_speed(row)] if "samples_per_s" in row else []
    if checkpoint:
        parts.append("checkpoint saved")
    return "[rayspeed] " + " | ".join(parts)


def _speed(row: dict) -> str:
    if "samples_per_s" not in row:
        return ""
    if "tokens_per_s" in row:
        return f"{row['tokens_per_s']:.0f} tokens/s"
    return f"{row['samples_per_s']:.0f} samples/s"
