"""The learning-rate schedule: warmup, then constant / linear / cosine decay, as a function of the step.

DeepSpeed's own schedulers reject a warmup of 0 and keep their step count when a resumed run gets
more epochs, so the lr would jump. This one is handed to DeepSpeed as a client scheduler (saved and
loaded with every checkpoint) and defines extending: when a checkpoint made for another total is
loaded after warmup, the decay is re-planned from the current step and its current lr to the new end.
A run that had finished its decay (its lr is at the floor) instead continues at the lr a run of the
new length has at that step: going on at the floor would add steps that learn (almost) nothing.
"""

import math
from dataclasses import asdict, dataclass, replace

from rayspeed.config.train import TrainConfig


@dataclass(frozen=True)
class LrPlan:
    """lr factor (of the peak lr) for every optimizer step; `decay_from` anchors the decay."""

    shape: str
    warmup_steps: int
    total_steps: int
    min_ratio: float
    decay_from_step: int
    decay_from_factor: float = 1.0

    @classmethod
    def from_config(cls, train: TrainConfig, *, total_steps: int) -> "LrPlan":
        return cls(shape=train.lr_schedule, warmup_steps=train.warmup_steps, total_steps=total_steps,
                   min_ratio=train.min_lr_ratio, decay_from_step=train.warmup_steps)

    def factor(self, step: int) -> float:
        """The lr factor used by optimizer step `step + 1` (`step` steps are done)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.shape == "constant":
            return 1.0
        span = max(self.total_steps - 1 - self.decay_from_step, 1)
        progress = min(max(step - self.decay_from_step, 0) / span, 1.0)
        remaining = 1 - progress if self.shape == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
        return self.min_ratio + (self.decay_from_factor - self.min_ratio) * remaining

    def extended_from(self, saved: "LrPlan", *, step: int) -> "LrPlan":
        """This plan continuing a checkpoint of `saved` taken after `step` steps, without an lr jump."""
        if saved.total_steps == self.total_steps:
            return saved  # the same run continues (a resume never changes the other train.* fields)
        if step < self.warmup_steps or self.shape == "constant" or step >= saved.total_steps:
            return self
        return replace(self, decay_from_step=step, decay_from_factor=saved.factor(step))


class StepLrScheduler:
    """A DeepSpeed client lr scheduler: DeepSpeed calls `step()` after each optimizer step and saves
    `state_dict()` with its checkpoint; `load_state_dict` re-plans an extended run."""

    def __init__(self, optimizer, *, plan: LrPlan, peak_lr: float):
        self.optimizer, self.plan, self.peak_lr = optimizer, plan, peak_lr
        self.steps_done = 0
        self._apply()

    def step(self, **_) -> None:
        self.steps_done += 1
        self._apply()

    def lr_of_step(self, step: int) -> float:
        """The lr optimizer step `step` (1-based) used."""
        return self.peak_lr * self.plan.factor(step - 1)

    def state_dict(self) -> dict:
        return {"steps_done": self.steps_done, "plan": asdict(self.plan)}

    def load_state_dict(self, state: dict) -> None:
        self.steps_done = state["steps_done"]
        self.plan = self.plan.extended_from(LrPlan(**state["plan"]), step=self.steps_done)
        self._apply()

    def _apply(self) -> None:
        lr = self.peak_lr * self.plan.factor(self.steps_done)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
