"""The `tune` section and its translation to Ray Tune, without a cluster: bad spaces are refused
with one line naming the field before Ray starts."""

import copy
import subprocess
import sys

import pytest
import yaml
from conftest import TINY_DIGITS

from rayspeed.config import load_config
from rayspeed.config.scaling import ScalingConfig
from rayspeed.errors import ClusterError, ConfigError

SPACE = {"train.lr": {"loguniform": [1e-4, 1e-2]}, "model.args.hidden_sizes": {"choice": [[32], [64]]}}


def sweep_file(tmp_path, **tune) -> str:
    config = copy.deepcopy(TINY_DIGITS)
    config["tune"] = {"space": SPACE, **tune}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def refused(tmp_path, **tune) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(sweep_file(tmp_path, **tune))
    return str(caught.value)


def test_schedulers_act_within_the_run(tmp_path):
    assert "grace_period: 5 epochs is longer than the run" in refused(
        tmp_path, scheduler={"name": "asha", "grace_period": 5})
    assert "perturbation_interval: 3 epochs leaves pbt no epoch" in refused(
        tmp_path, scheduler={"name": "pbt", "perturbation_interval": 3}, space={"train.lr": {"choice": [0.1]}})
    with pytest.raises(ConfigError, match="checkpoint.every_n_steps: asha resumes paused trials from the checkpoint "
                                          "of an epoch's end"):
        load_config(sweep_file(tmp_path, scheduler={"name": "asha"}), ["checkpoint.every_n_steps=7"])


@pytest.mark.parametrize("space, expected", [
    ({"train.lrr": {"choice": [0.1]}}, "tune.space.train.lrr = 0.1 gives: train.lrr: unknown key; did you mean 'lr'?"),
    ({"train.lr": {"choice": []}}, "tune.space.train.lr: choice needs at least one value"),
    ({"train.lr": {"uniform": [0.1, 0.01]}}, "tune.space.train.lr: uniform needs low < high (got low 0.1, high 0.01)"),
    ({"train.lr": {"loguniform": [0, 0.1]}}, "tune.space.train.lr: loguniform needs low > 0 (got 0)"),
    ({"train.lr": {"quniform": [0.1, 0.2]}}, "tune.space.train.lr: quniform takes [low, high, q] as numbers"),
    ({"train.epochs": {"randint": [1.5, 3]}}, "tune.space.train.epochs: randint takes integers"),
    ({"train.lr": {"choice": [0.1], "grid": [0.2]}}, "tune.space.train.lr: expected exactly one distribution"),
    ({"train.lr": {"normal": [0, 1]}}, "tune.space.train.lr.normal"),
    ({"scaling.num_workers": {"choice": [1, 2]}}, "tune.space.scaling.num_workers: scaling is the same for every"),
    ({"train.zero_stage": {"choice": [2, 5]}}, "tune.space.train.zero_stage = 5 gives: train.zero_stage: Input"),
])
def test_bad_search_spaces_are_refused_naming_the_dimension(tmp_path, space, expected):
    assert expected in refused(tmp_path, space=space)


def test_a_grid_with_a_bayesian_searcher_is_refused(tmp_path):
    message = refused(tmp_path, search="optuna", space={"train.lr": {"grid": [0.1, 0.01]}})
    assert "tune.search: optuna samples every dimension; use choice instead of grid for train.lr" in message


def test_grid_search_needs_enumerable_dimensions(tmp_path):
    assert "tune.search: grid needs choice or grid dimensions; train.lr are sampled" in refused(tmp_path, search="grid")


def test_pbt_mutates_only_what_a_running_trial_can_take(tmp_path):
    message = refused(tmp_path, scheduler={"name": "pbt"})
    assert "pbt can only mutate train.lr" in message and "(got model.args.hidden_sizes)" in message


def test_early_stopping_schedulers_count_epochs(tmp_path):
    config = copy.deepcopy(TINY_DIGITS)
    config["train"] = {**config["train"], "epochs": None, "max_steps": 30}
    config["tune"] = {"space": SPACE, "scheduler": {"name": "asha"}}
    path = tmp_path / "steps.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="tune.scheduler: asha counts epochs; set train.epochs"):
        load_config(path)


def test_param_space_and_schedulers_follow_the_section(tmp_path):
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.sample import Categorical, Float

    from rayspeed.tuning import search
    from rayspeed.tuning.halving import SuccessiveHalving

    cfg = load_config(sweep_file(tmp_path, scheduler={"name": "asha", "grace_period": 2}))
    space = search.param_space(cfg.tune)
    assert isinstance(space["train.lr"], Float) and isinstance(space["model.args.hidden_sizes"], Categorical)
    assert space["train.lr"].lower == 1e-4
    searcher = search.searcher(cfg.tune, seed=0, concurrency=2)
    asha = search.scheduler(cfg, searcher=searcher, concurrency=2)
    assert isinstance(asha, SuccessiveHalving) and asha._time_attr == "epoch" and asha._rungs == [2]
    assert cfg.tune.trial_count == 8 and load_config(sweep_file(
        tmp_path, search="grid", num_samples=2, space={"train.lr": {"grid": [0.1, 0.01]},
                                                       "model.args.hidden_sizes": {"choice": [[8], [16], [32]]}}
    )).tune.trial_count == 12
    pbt_cfg = load_config(sweep_file(tmp_path, scheduler={"name": "pbt"},
                                     space={"train.lr": {"grid": [0.1, 0.01]}}), ["checkpoint.every_n_steps=null"])
    assert search.param_space(pbt_cfg.tune)["train.lr"] == {"grid_search": [0.1, 0.01]}
    pbt = search.scheduler(pbt_cfg, searcher=searcher, concurrency=2)
    assert isinstance(pbt, PopulationBasedTraining) and pbt._hyperparam_mutations["train.lr"] == [0.1, 0.01]
    momentum = {"train.momentum": {"uniform": [0.8, 0.95]}}
    bounded = load_config(sweep_file(tmp_path, scheduler={"name": "pbt"}, space=momentum),
                          ["checkpoint.every_n_steps=null"])
    assert search.BoundsClamp(bounded.tune)({"train.momentum": 0.95 * 1.2}) == {"train.momentum": 0.95}


def test_concurrent_trials_are_what_the_cluster_holds(tmp_path):
    from rayspeed.tuning.driver import trial_concurrency

    scaling = ScalingConfig(num_workers=2)  # 1 driver + 2 workers + 1 for Ray Data per trial
    assert trial_concurrency(scaling, {"CPU": 8}, None, where="test") == 2
    assert trial_concurrency(scaling, {"CPU": 16}, 3, where="test") == 3
    with pytest.raises(ClusterError, match="one trial needs 1 CPU for its driver"):
        trial_concurrency(scaling, {"CPU": 3}, None, where="test")


def test_tune_verb_refuses_a_bad_space_before_ray_starts(tmp_path):
    path = sweep_file(tmp_path, space={"train.lr": {"loguniform": [-1, 0.1]}})
    result = subprocess.run([sys.executable, "-m", "rayspeed", "tune", path], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("tune.space.train.lr: loguniform needs low > 0 (got -1)")
    assert not (tmp_path / "runs").exists()


def test_tune_verb_needs_a_tune_section(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(TINY_DIGITS))
    result = subprocess.run([sys.executable, "-m", "rayspeed", "tune", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "tune: required by `rayspeed tune` but missing" in result.stderr


def test_optuna_search_is_limited_to_the_concurrent_trials(tmp_path):
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from rayspeed.tuning import search

    cfg = load_config(sweep_file(tmp_path, search="optuna"))
    searcher = search.searcher(cfg.tune, seed=0, concurrency=2)
    assert isinstance(searcher, ConcurrencyLimiter) and isinstance(searcher.searcher, OptunaSearch)
    assert searcher.max_concurrent == 2
