"""The promotion rules of `SuccessiveHalving`, driven by a stand-in for Tune's controller (pure: the
real scheduler under real Tune is tests/test_tune.py)."""

from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial

from rayspeed.tuning.halving import SuccessiveHalving, rung_epochs

ENDED = (Trial.TERMINATED, Trial.ERROR)


class FakeTrial:
    def __init__(self, trial_id: str, *, status: str = Trial.PENDING, last_result: dict | None = None):
        self.trial_id, self.status, self.last_result, self.epoch = trial_id, status, last_result or {}, 0

    def set_status(self, status: str) -> None:
        self.status = status


class FakeController:
    """Starts new trials while the searcher's limit allows, runs every running trial one epoch per
    tick, and applies the scheduler's decisions, as Tune's controller does."""

    def __init__(self, qualities: list[float | None], *, concurrency: int, max_t: int = 9,
                 reduction_factor: float = 3, metric: str = "val_accuracy", mode: str = "max"):
        self.qualities, self.max_t, self.trials = qualities, max_t, []
        self.searcher = SimpleNamespace(max_concurrent=concurrency)
        self.scheduler = SuccessiveHalving(time_attr="epoch", max_t=max_t, grace_period=1,
                                           reduction_factor=reduction_factor, trial_count=len(qualities),
                                           concurrency=concurrency, searcher=self.searcher)
        self.scheduler.set_search_properties(metric, mode)
        self.trial_epochs = 0
        self.most_running = 0

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial) -> None:
        assert trial.status == Trial.PAUSED
        trial.status = Trial.TERMINATED

    def add(self, trial: FakeTrial) -> FakeTrial:
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)
        return trial

    def run(self) -> None:
        for _ in range(1000):
            if all(t.status in ENDED for t in self.trials) and len(self.trials) == len(self.qualities):
                return
            if chosen := self.scheduler.choose_trial_to_run(self):
                chosen.status = Trial.RUNNING
            live = [t for t in self.trials if t.status not in ENDED]
            if len(self.trials) < len(self.qualities) and len(live) < self.searcher.max_concurrent:
                self.add(FakeTrial(f"t{len(self.trials)}"))
            for trial in self.trials:
                if trial.status == Trial.PENDING:
                    trial.status = Trial.RUNNING
            running = [t for t in self.trials if t.status == Trial.RUNNING]
            self.most_running = max(self.most_running, len(running))
            for trial in running:
                self.tick(trial)
        raise AssertionError("the sweep did not end")

    def tick(self, trial: FakeTrial) -> None:
        trial.epoch += 1
        self.trial_epochs += 1
        quality = self.qualities[int(trial.trial_id[1:])]
        result = {"epoch": float(trial.epoch), "val_accuracy": quality + trial.epoch / 100,
                  "done": trial.epoch == self.max_t}
        decision = self.scheduler.on_trial_result(self, trial, result)
        trial.last_result = result
        if result["done"]:
            trial.status = Trial.TERMINATED
        elif decision == SuccessiveHalving.PAUSE:
            trial.status = Trial.PAUSED


def test_rungs_are_grace_times_powers_of_the_reduction_factor():
    assert rung_epochs(grace_period=1, reduction_factor=3, max_t=9) == [1, 3]
    assert rung_epochs(grace_period=1, reduction_factor=2, max_t=3) == [1, 2]
    assert rung_epochs(grace_period=2, reduction_factor=3, max_t=27) == [2, 6, 18]
    assert rung_epochs(grace_period=1, reduction_factor=1.5, max_t=4) == [1, 2, 3]


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_only_the_top_third_goes_on_at_each_rung(concurrency):
    qualities = [0.3, 0.5, 0.1, 0.9, 0.2, 0.4, 0.7, 0.6, 0.0, 0.8, 0.35, 0.45]
    sweep = FakeController(qualities, concurrency=concurrency)
    sweep.run()
    epochs = {t.trial_id: t.epoch for t in sweep.trials}
    # 12 trials to epoch 1; the best 4 to epoch 3, and t1, promoted when it led the first 3; the best
    # of those to epoch 9: 12 + 5 * 2 + 6 (a full sweep: 108).
    assert sweep.trial_epochs == 28
    assert {trial for trial, epoch in epochs.items() if epoch >= 3} == {"t3", "t9", "t6", "t7", "t1"}
    assert [trial for trial, epoch in epochs.items() if epoch == 9] == ["t3"]
    assert sweep.most_running <= concurrency
    assert all(t.status == Trial.TERMINATED for t in sweep.trials)


def test_a_small_sweep_still_trains_its_best_trial_to_the_end():
    sweep = FakeController([0.2, 0.1], concurrency=1)
    sweep.run()
    assert {t.trial_id: t.epoch for t in sweep.trials} == {"t0": 9, "t1": 1}


def test_a_restored_sweep_rebuilds_its_rungs_and_holds_unfinished_trials():
    sweep = FakeController([None] * 5, concurrency=1)  # driven by hand
    scheduler = sweep.scheduler
    sweep.add(FakeTrial("a", status=Trial.TERMINATED, last_result={"epoch": 1.0, "val_accuracy": 0.5}))
    b = sweep.add(FakeTrial("b", last_result={"epoch": 4.0, "val_accuracy": 0.95}))  # went on from epochs 1 and 3
    c = sweep.add(FakeTrial("c", last_result={"epoch": 1.0, "val_accuracy": 0.9}))
    d = sweep.add(FakeTrial("d", last_result={"epoch": 1.0, "val_accuracy": 0.2}))
    assert b.status == c.status == d.status == Trial.PAUSED  # none starts behind the scheduler's back
    # Epoch 1's top 4 // 3 = 1 is b, which passed it: b resumes, c and d wait, a new trial may start.
    assert scheduler.choose_trial_to_run(sweep) is b
    assert sweep.searcher.max_concurrent == 1 + 2
    b.set_status(Trial.RUNNING)
    assert scheduler.choose_trial_to_run(sweep) is None  # no room
    e = sweep.add(FakeTrial("e"))
    assert scheduler.on_trial_result(sweep, e, {"epoch": 1.0, "val_accuracy": 0.1}) == SuccessiveHalving.PAUSE
    e.set_status(Trial.PAUSED)
    # All 5 trials are in: epoch 1 promotes max(1, 5 // 3) = 1, b; the others stop for good.
    scheduler.choose_trial_to_run(sweep)
    assert c.status == d.status == e.status == Trial.TERMINATED and b.status == Trial.RUNNING


def test_a_failed_trial_is_never_promoted_and_a_restarted_one_keeps_its_rungs():
    sweep = FakeController([None] * 2, concurrency=1, metric="val_loss", mode="min")
    failed = sweep.add(FakeTrial("failed", status=Trial.RUNNING))
    slow = sweep.add(FakeTrial("slow", status=Trial.RUNNING))
    assert sweep.scheduler.on_trial_result(sweep, failed, {"epoch": 1.0, "val_loss": 0.1}) == SuccessiveHalving.PAUSE
    failed.set_status(Trial.PENDING)  # Tune starts a crashed trial again and adds it again
    failed.last_result = {"epoch": 1.0, "val_loss": 0.1}
    sweep.scheduler.on_trial_add(sweep, failed)
    assert failed.status == Trial.PENDING
    failed.set_status(Trial.ERROR)  # out of retries
    # The rung is settled (2 of 2 trials in): its one promotion goes to the worse trial that can run.
    assert sweep.scheduler.on_trial_result(sweep, slow, {"epoch": 1.0, "val_loss": 0.9}) == SuccessiveHalving.CONTINUE
