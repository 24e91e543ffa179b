"""The `tune` section: a hyperparameter search over any config field, run by `rayspeed tune`.

A search space maps a dotted config path to one distribution written as `{kind: [arguments]}`:
`train.lr: {loguniform: [1.0e-4, 1.0e-2]}`, `model.args.hidden_sizes: {choice: [[64], [128, 64]]}`.
Every trial is the experiment with its sampled values set at those paths.
"""

import math
from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from rayspeed.config.metrics import METRIC_MODES, EpochMetric
from rayspeed.config.section import Section

Kind = Literal["choice", "grid", "uniform", "quniform", "loguniform", "qloguniform", "randint", "qrandint"]
# The arguments each kind takes, in order (randint's high is exclusive, qrandint's inclusive, as in Ray Tune).
ARGUMENTS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"), "quniform": ("low", "high", "q"),
    "loguniform": ("low", "high"), "qloguniform": ("low", "high", "q"),
    "randint": ("low", "high"), "qrandint": ("low", "high", "q"),
}
# Paths a trial may not vary: the sweep's identity and storage, its resources, the search itself.
FIXED_PREFIXES = ("run.", "tune.", "scaling.", "schema_version")
# What Population Based Training may mutate in a running trial: values that leave the checkpoint's
# shapes and step count valid (the model and the batch sizes do not).
PBT_MUTABLE = ("train.lr", "train.weight_decay", "train.grad_clip", "train.momentum")


class SchedulerConfig(Section):
    """Which trials to stop early or to replace; every scheduler counts time in epochs."""

    name: Literal["fifo", "asha", "median", "pbt"] = "fifo"
    """fifo runs every trial to the end; asha (async successive halving) pauses trials at its rungs
    and continues only the best 1/reduction_factor of them; median stops trials below the median;
    pbt (population based training) replaces poor trials by mutated copies of good ones."""
    grace_period: PositiveInt = 1
    """Epochs every trial runs before asha or median may stop it."""
    reduction_factor: float = Field(3.0, gt=1)
    """asha: rungs at grace_period x reduction_factor^k epochs; 1/reduction_factor of the trials
    reaching a rung continue from it."""
    perturbation_interval: PositiveInt = 1
    """pbt: epochs between exploit/explore decisions."""
    quantile_fraction: float = Field(0.25, gt=0, le=0.5)
    """pbt: the bottom fraction of trials copies the top fraction."""
    resample_probability: float = Field(0.25, ge=0, le=1)
    """pbt: chance that an explored value is drawn anew from the space instead of perturbed."""


class TuneConfig(Section):
    """The search: space, objective, search algorithm, scheduler and concurrency."""

    space: dict[str, dict[Kind, list]] = Field(min_length=1)
    """Dotted config path -> `{kind: [arguments]}`; kinds: choice and grid take the values, uniform
    and loguniform take [low, high], randint [low, high), and the q-variants [low, high, q] (rounded
    to multiples of q, high included)."""
    metric: EpochMetric = "val_accuracy"
    """What the search optimizes, as measured at the end of every epoch."""
    mode: Literal["min", "max"] | None = None
    """Whether lower or higher is better; default: max for accuracy and r2, min for losses and errors."""
    num_samples: PositiveInt = 8
    """Trials to sample (with grid dimensions: repetitions of the whole grid)."""
    search: Literal["random", "grid", "optuna"] = "random"
    """random sampling, an exhaustive grid (choice and grid dimensions only), or Bayesian search
    with Optuna's TPE (no grid dimensions)."""
    scheduler: SchedulerConfig = SchedulerConfig()
    max_concurrent_trials: PositiveInt | None = None
    """Trials running at once; default and upper bound: as many as the cluster holds."""
    max_trial_failures: int = Field(1, ge=-1)
    """Times a crashed trial is started again (its run resumes from its checkpoint); -1 is unlimited."""

    @field_validator("space")
    @classmethod
    def _dimensions(cls, space: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
        problems = [problem for path, spec in space.items() for problem in dimension_problems(path, spec)]
        if problems:
            raise ValueError(" | ".join(problems))
        return space

    @model_validator(mode="after")
    def _search_fits_space(self):
        kinds = {path: dimension(spec)[0] for path, spec in self.space.items()}
        if self.search == "grid" and (sampled := [p for p, k in kinds.items() if k not in ("grid", "choice")]):
            raise ValueError(f"tune.search: grid needs choice or grid dimensions; {', '.join(sampled)} "
                             "are sampled (use search: random)")
        if self.search == "optuna" and (grids := [p for p, k in kinds.items() if k == "grid"]):
            raise ValueError(f"tune.search: optuna samples every dimension; use choice instead of grid for "
                             f"{', '.join(grids)}")
        if self.scheduler.name == "pbt":
            if self.search == "optuna":
                raise ValueError("tune.search: optuna cannot follow trials whose values pbt mutates; use random")
            if frozen := [p for p in kinds if p not in PBT_MUTABLE]:
                raise ValueError(f"tune.space: pbt can only mutate {', '.join(PBT_MUTABLE)} in a running "
                                 f"trial (got {', '.join(frozen)})")
        return self

    @property
    def objective_mode(self) -> str:
        return self.mode or METRIC_MODES[self.metric]

    @property
    def trial_count(self) -> int:
        """Trials the sweep runs: num_samples, times the grid's size (grid search: every choice too)."""
        sizes = [len(arguments) for kind, arguments in map(dimension, self.space.values())
                 if kind == "grid" or (kind == "choice" and self.search == "grid")]
        return self.num_samples * math.prod(sizes)


def dimension(spec: dict[str, list]) -> tuple[str, list]:
    """`{"loguniform": [1e-4, 1e-2]}` -> ("loguniform", [1e-4, 1e-2])."""
    (kind, arguments), = spec.items()
    return kind, arguments


def dimension_problems(path: str, spec: dict[str, list]) -> list[str]:
    where = f"tune.space.{path}"
    if path.startswith(FIXED_PREFIXES):
        return [f"{where}: {path.split('.')[0]} is the same for every trial and cannot be searched"]
    if len(spec) != 1:
        return [f"{where}: expected exactly one distribution, e.g. {{loguniform: [1.0e-4, 1.0e-2]}} (got {spec})"]
    kind, arguments = dimension(spec)
    if kind in ("choice", "grid"):
        return [] if arguments else [f"{where}: {kind} needs at least one value"]
    names = ARGUMENTS[kind]
    if len(arguments) != len(names) or not all(_is_number(a) for a in arguments):
        return [f"{where}: {kind} takes [{', '.join(names)}] as numbers (got {arguments})"]
    values = dict(zip(names, arguments, strict=True))
    if kind.endswith("randint") and not all(float(v).is_integer() for v in arguments):
        return [f"{where}: {kind} takes integers (got {arguments})"]
    if values["low"] >= values["high"]:
        return [f"{where}: {kind} needs low < high (got low {values['low']}, high {values['high']})"]
    if "log" in kind and values["low"] <= 0:
        return [f"{where}: {kind} needs low > 0 (got {values['low']})"]
    if "q" in values and values["q"] <= 0:
        return [f"{where}: {kind} needs q > 0 (got {values['q']})"]
    return []


def probe_values(spec: dict[str, list]) -> list:
    """Values that stand for the whole dimension when checking it against the schema."""
    kind, arguments = dimension(spec)
    if kind in ("choice", "grid"):
        return list(arguments)
    low, high = arguments[0], arguments[1]
    if kind == "randint":
        return [int(low), int(high) - 1]
    if kind == "qrandint":
        return [int(low), int(high)]
    return [low, high]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
