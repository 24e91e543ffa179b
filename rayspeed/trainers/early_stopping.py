"""Early stopping as every rank decides it: the same all-reduced scores give the same decision, and
the decision is all-reduced once more, so no rank can leave while the others wait in a collective."""

import math
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from rayspeed.config.early_stopping import EarlyStoppingConfig


@dataclass
class EarlyStopper:
    """Counts checkpoints without improvement. `best_*` is the best score seen (Ray ranks checkpoints
    by it, so its checkpoint is the one kept); `reference` moves only on improvements beyond min_delta."""

    metric: str
    mode: str  # min or max
    patience: int
    min_delta: float
    best_score: float | None = None
    best_step: int | None = None
    reference: float | None = None
    stale: int = 0
    stopped: bool = False

    @classmethod
    def of(cls, config: EarlyStoppingConfig, *, metric: str, mode: str) -> "EarlyStopper":
        return cls(metric=metric, mode=mode, patience=config.patience, min_delta=config.min_delta)

    def update(self, score: float, *, step: int) -> bool:
        """Takes the score of the checkpoint of `step`; True when patience has run out. A tie makes the
        later checkpoint the best, as Ray's ranking does (so the best is never one Ray deleted); NaN
        is worse than any score."""
        sign = 1.0 if self.mode == "min" else -1.0
        if math.isnan(score):
            score = math.inf * sign
        if self.best_score is None or sign * (score - self.best_score) <= 0:
            self.best_score, self.best_step = score, step
        if self.reference is None or sign * (self.reference - score) > self.min_delta:
            self.reference, self.stale = score, 0
        else:
            self.stale += 1
        return self.stale >= self.patience

    def state(self) -> dict:
        """What a checkpoint keeps, so a restarted run counts on from where it was."""
        return {"early_stopping": asdict(self)}

    def load(self, state: dict) -> None:
        """The counts a checkpoint kept; the settings stay this run's."""
        saved = state.get("early_stopping", {})
        for name in ("best_score", "best_step", "reference", "stale", "stopped"):
            if name in saved:
                setattr(self, name, saved[name])


def all_agree_to_stop(stop: bool, *, device) -> bool:
    """Collective: True on every rank when any rank would stop."""
    flag = torch.tensor([1.0 if stop else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())
