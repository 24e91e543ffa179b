"""The learning-rate schedule, pure: no warmup, warmup, decay shapes, and extending a finished run."""

import math

import pytest
import torch

from rayspeed.trainers.schedule import LrPlan, StepLrScheduler


def plan(shape="cosine", warmup=0, total=100, min_ratio=0.0) -> LrPlan:
    return LrPlan(shape=shape, warmup_steps=warmup, total_steps=total, min_ratio=min_ratio, decay_from_step=warmup)


def test_without_warmup_the_first_step_uses_the_peak_lr():
    assert plan(warmup=0).factor(0) == 1.0
    assert plan(shape="constant").factor(57) == 1.0


def test_warmup_rises_linearly_to_the_peak_then_decays_to_the_floor():
    cosine = plan(warmup=4, total=20, min_ratio=0.1)
    assert [cosine.factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine.factor(19) == pytest.approx(0.1)  # the last step reaches min_lr_ratio
    linear = plan(shape="linear", warmup=0, total=11)
    assert [round(linear.factor(s), 6) for s in range(11)] == [round(1 - s / 10, 6) for s in range(11)]


def test_extending_a_run_replans_the_decay_from_the_current_step_without_a_jump():
    old = plan(total=100, min_ratio=0.05)
    new = plan(total=300, min_ratio=0.05).extended_from(old, step=60)
    assert new.factor(60) == pytest.approx(old.factor(60))  # continues where it was
    factors = [new.factor(s) for s in range(60, 300)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))  # then only decays
    assert factors[-1] == pytest.approx(0.05)
    expected = 0.05 + (old.factor(60) - 0.05) * 0.5 * (1 + math.cos(math.pi * 120 / 239))
    assert new.factor(180) == pytest.approx(expected)
    again = plan(total=400, min_ratio=0.05).extended_from(new, step=250)  # a second extension
    assert again.factor(250) == pytest.approx(new.factor(250))


def test_resuming_with_the_same_total_keeps_the_saved_plan():
    old = plan(total=300).extended_from(plan(total=100), step=60)
    assert plan(total=300).extended_from(old, step=80) == old


def test_scheduler_saves_its_step_and_reloads_it_into_an_extended_plan():
    weights = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weights], lr=0.5)
    first = StepLrScheduler(optimizer, plan=plan(total=10), peak_lr=0.5)
    for _ in range(6):
        first.step()
    lr_before = optimizer.param_groups[0]["lr"]
    second = StepLrScheduler(optimizer, plan=plan(total=30), peak_lr=0.5)
    second.load_state_dict(first.state_dict())
    assert second.steps_done == 6 and optimizer.param_groups[0]["lr"] == pytest.approx(lr_before)
    assert second.lr_of_step(7) == pytest.approx(lr_before)


def test_extending_a_finished_run_continues_at_the_lr_of_the_longer_plan_not_at_the_floor():
    finished = plan(total=100)  # cosine to 0: its last steps trained at (almost) 0
    new = plan(total=200).extended_from(finished, step=100)
    assert new.factor(100) == pytest.approx(plan(total=200).factor(100)) and new.factor(100) > 0.4
    assert new.factor(199) == pytest.approx(0.0)


def test_a_user_deepspeed_scheduler_is_refused_not_ignored(tmp_path):
    from conftest import TINY_DIGITS

    from rayspeed.config.load import validate
    from rayspeed.errors import ConfigError

    with pytest.raises(ConfigError, match="deepspeed.scheduler: rayspeed runs its own lr schedule"):
        validate({**TINY_DIGITS, "deepspeed": {"scheduler": {"type": "WarmupLR"}}}, source="test")
