"""The `tune` section in Ray Tune's terms: the parameter space, the search algorithm, the scheduler.

Schedulers count time in epochs (the `epoch` every trial result carries, which survives a trial's
restart), never in Tune iterations or seconds.
"""

from ray import tune
from ray.tune.schedulers import (
    FIFOScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, Searcher

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.tune import ARGUMENTS, TuneConfig, dimension
from rayspeed.tuning.halving import SuccessiveHalving

TIME_ATTR = "epoch"


def param_space(tune_cfg: TuneConfig) -> dict:
    """Dotted config path -> Tune domain (grid dimensions, and every dimension of a grid search,
    become `grid_search`)."""
    return {path: _domain(spec, grid=tune_cfg.search == "grid") for path, spec in tune_cfg.space.items()}


def _domain(spec: dict[str, list], *, grid: bool):
    kind, arguments = dimension(spec)
    if kind == "grid" or (grid and kind == "choice"):
        return tune.grid_search(list(arguments))
    if kind == "choice":
        return tune.choice(list(arguments))
    if kind.endswith("randint"):
        return getattr(tune, kind)(*(int(a) for a in arguments))
    return getattr(tune, kind)(*arguments)


def pbt_mutations(tune_cfg: TuneConfig) -> dict:
    """Choices and grids as lists (PBT moves to a neighbouring value), numbers as their domains."""
    mutations = {}
    for path, spec in tune_cfg.space.items():
        kind, arguments = dimension(spec)
        mutations[path] = list(arguments) if kind in ("choice", "grid") else _domain(spec, grid=False)
    return mutations


class BoundsClamp:
    """PBT's explore multiplies numbers by 0.8 or 1.2: keep them inside their dimension's bounds."""

    def __init__(self, tune_cfg: TuneConfig):
        self._bounds = {path: (arguments[0], arguments[1]) for path, (kind, arguments)
                        in ((p, dimension(s)) for p, s in tune_cfg.space.items()) if kind in ARGUMENTS}

    def __call__(self, config: dict) -> dict:
        for path, (low, high) in self._bounds.items():
            if isinstance(config.get(path), (int, float)):
                config[path] = min(max(config[path], low), high)
        return config


def searcher(tune_cfg: TuneConfig, *, seed: int, concurrency: int) -> Searcher | BasicVariantGenerator:
    """The search algorithm, holding back trials beyond `concurrency` (Tune's own
    `max_concurrent_trials` ignores a BasicVariantGenerator instance)."""
    if tune_cfg.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch  # imports optuna: only when asked for

        return ConcurrencyLimiter(OptunaSearch(seed=seed), max_concurrent=concurrency)
    return BasicVariantGenerator(random_state=seed, max_concurrent=concurrency)


def scheduler(cfg: ExperimentConfig, *, searcher: Searcher | BasicVariantGenerator, concurrency: int) -> TrialScheduler:
    """metric and mode come from TuneConfig, not from here (Tune refuses them twice). asha lets
    `searcher` start new trials beside the ones it pauses."""
    tune_cfg = cfg.tune
    settings = tune_cfg.scheduler
    if settings.name == "asha":
        return SuccessiveHalving(time_attr=TIME_ATTR, max_t=cfg.train.epochs, grace_period=settings.grace_period,
                                 reduction_factor=settings.reduction_factor, trial_count=tune_cfg.trial_count,
                                 concurrency=concurrency, searcher=searcher)
    if settings.name == "median":
        return MedianStoppingRule(time_attr=TIME_ATTR, grace_period=settings.grace_period, min_samples_required=3)
    if settings.name == "pbt":
        return PopulationBasedTraining(time_attr=TIME_ATTR, perturbation_interval=settings.perturbation_interval,
                                       hyperparam_mutations=pbt_mutations(tune_cfg),
                                       custom_explore_fn=BoundsClamp(tune_cfg), synch=False,
                                       quantile_fraction=settings.quantile_fraction,
                                       resample_probability=settings.resample_probability)
    return FIFOScheduler()
