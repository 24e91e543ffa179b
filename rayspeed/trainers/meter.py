"""Per-rank accumulation of one report window, reduced across ranks only when a report is due."""

import time

import torch
import torch.distributed as dist


class WindowMeter:
    """Train loss, rows, steps and data-wait seconds since the last report.

    Losses stay on the device as a running tensor sum: calling `.item()` every micro step would be
    a host-device sync on GPUs, and so would building a device tensor of the counts.
    """

    def __init__(self, device):
        self._device = device
        self.restart()

    def restart(self) -> None:
        """Starts a new window; called after a report so its validation and checkpoint time is not counted."""
        self._loss = torch.zeros((), dtype=torch.float64, device=self._device)
        self._counts = [0.0, 0.0, 0.0]  # micro steps, rows, seconds waiting for data
        self._steps = 0
        self._started = time.perf_counter()

    def add_micro(self, loss: torch.Tensor, *, rows: int, wait_s: float) -> None:
        self._loss += loss.detach()
        self._counts = [self._counts[0] + 1, self._counts[1] + rows, self._counts[2] + wait_s]

    def add_step(self) -> None:
        self._steps += 1

    def reduce(self, *, world: int) -> dict[str, float]:
        """Collective: every rank must call it at the same step. Call `restart` once the report is done."""
        elapsed = time.perf_counter() - self._started
        sums = torch.cat([self._loss.reshape(1), torch.tensor(self._counts, dtype=torch.float64, device=self._device)])
        dist.all_reduce(sums)
        loss, micro, rows, wait = sums.tolist()
        steps = max(self._steps, 1)
        window = {
            "train_loss": loss / max(micro, 1),
            "samples_per_s": rows / elapsed,
            "step_time_s": elapsed / steps,
            "data_wait_s": wait / world,
        }
        return window
