"""Asynchronous successive halving with promotions (ASHA as in Li et al. 2020, the way Determined
runs it): a trial that reaches a rung (grace_period x reduction_factor^k epochs) is paused there,
and continues only once it ranks in the top 1/reduction_factor of the trials recorded at that rung.

Ray Tune's ASHAScheduler decides at once instead: a trial runs on if it beats the rung's cutoff so
far, which waves the first trials of a sweep through every rung (measured on the digits sweep:
58% of a full sweep's trial-epochs). Pausing costs a trial restart (its run resumes from the rung
epoch's checkpoint), never an epoch.

Paused trials hold no resources, so the searcher's concurrency limit is raised by their number and
new trials start beside them; promoted trials go before new ones. Once no trial can still reach a
rung, its best max(1, n / reduction_factor) are promoted and the rest stopped, so a sweep of a
known number of trials ends with at least one trial trained to the last epoch.
"""

import math
from dataclasses import dataclass

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

ENDED = (Trial.TERMINATED, Trial.ERROR)


def rung_epochs(*, grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """The epochs at which trials are compared: grace_period x reduction_factor^k, before max_t."""
    rungs, epoch = [], float(grace_period)
    while round(epoch) < max_t:
        if not rungs or round(epoch) > rungs[-1]:
            rungs.append(round(epoch))
        epoch *= reduction_factor
    return rungs


@dataclass(frozen=True)
class _Rung:
    settled: bool  # no trial can still arrive here
    promotions: frozenset[str]  # who may go on from here now


class SuccessiveHalving(TrialScheduler):
    """ASHA with promotions, for a sweep of `trial_count` trials, `concurrency` of them at a time.

    Args:
        searcher: Tune's BasicVariantGenerator or ConcurrencyLimiter for this sweep; both read
            `max_concurrent` before every new trial.
    """

    def __init__(self, *, time_attr: str, max_t: int, grace_period: int, reduction_factor: float,
                 trial_count: int, concurrency: int, searcher):
        super().__init__()
        self._time_attr, self._reduction_factor = time_attr, reduction_factor
        self._rungs = rung_epochs(grace_period=grace_period, reduction_factor=reduction_factor, max_t=max_t)
        self._trial_count, self._concurrency, self._searcher = trial_count, concurrency, searcher
        self._scores: list[dict[str, float]] = [{} for _ in self._rungs]  # higher is better
        self._promoted: list[set[str]] = [set() for _ in self._rungs]
        self._trials: dict[str, Trial] = {}
        self._mode = None

    def set_search_properties(self, metric, mode, **spec) -> bool:
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        """A restored sweep's trials come back with their last result: their rungs are rebuilt from
        it (its score stands in for the rungs it passed, as promoted there), and unfinished ones wait
        as paused, to be resumed within the concurrency like any promoted trial. (A crashed trial that
        Tune starts again is added again: its rungs stand.)"""
        if trial.trial_id in self._trials:
            return
        self._trials[trial.trial_id] = trial
        result = trial.last_result or {}
        epoch = result.get(self._time_attr)
        if epoch is None:
            return
        for k, rung in enumerate(self._rungs):
            if rung <= epoch:
                self._scores[k][trial.trial_id] = self._score(result)
            if rung < epoch:
                self._promoted[k].add(trial.trial_id)
        if trial.status == Trial.PENDING and not result.get("done"):
            trial.set_status(Trial.PAUSED)  # the controller files the trial by its status after this call

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        epoch = result.get(self._time_attr)
        if epoch is None or result.get("done"):
            return self.CONTINUE
        for k, rung in enumerate(self._rungs):  # a rung passed unrecorded (a resume): judged by this result
            if rung <= epoch:
                self._scores[k].setdefault(trial.trial_id, self._score(result))
        held = self._held_at(trial.trial_id)
        if held is None:
            return self.CONTINUE
        if trial.trial_id in self._rung_states(tune_controller.get_trials())[held].promotions:
            self._promoted[held].add(trial.trial_id)
            return self.CONTINUE
        return self.PAUSE

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        pass

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        pass

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        pass

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """Promotes paused trials, stops those no rung can promote any more, lets the searcher add
        trials for the paused ones, and resumes the deepest promoted trial when there is room."""
        trials = tune_controller.get_trials()
        for k, rung in enumerate(self._rung_states(trials)):
            for trial in trials:
                if self._held_at(trial.trial_id) != k:
                    continue
                if trial.trial_id in rung.promotions:
                    self._promoted[k].add(trial.trial_id)
                elif rung.settled and trial.status == Trial.PAUSED:
                    tune_controller.stop_trial(trial)
        paused = [t for t in trials if t.status == Trial.PAUSED]
        resumable = [t for t in paused if self._held_at(t.trial_id) is None]
        busy = sum(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials)
        self._searcher.max_concurrent = self._concurrency + len(paused) - len(resumable)
        if not resumable or busy >= self._concurrency:
            return None
        return max(resumable, key=lambda t: sum(t.trial_id in scores for scores in self._scores))

    def debug_string(self) -> str:
        return f"Successive halving with promotions at epochs {self._rungs}"

    def _score(self, result: dict) -> float:
        value = result.get(self._metric)
        if value is None or math.isnan(value):
            return -math.inf
        return value if self._mode == "max" else -value

    def _held_at(self, trial_id: str) -> int | None:
        """The rung where the trial waits for promotion (recorded there, not promoted), if any."""
        return next((k for k, scores in enumerate(self._scores)
                     if trial_id in scores and trial_id not in self._promoted[k]), None)

    def _rung_states(self, trials: list[Trial]) -> list[_Rung]:
        """Bottom up: a rung is settled when every trial is recorded there, has ended, or waits at a
        settled lower rung that will not promote it. Failed trials count towards a rung's quota but
        are never promoted."""
        status = {t.trial_id: t.status for t in trials}
        states: list[_Rung] = []
        for k, scores in enumerate(self._scores):
            settled = len(self._trials) >= self._trial_count and all(
                trial_id in scores or status.get(trial_id) in ENDED
                or ((j := self._held_at(trial_id)) is not None and j < k and states[j].settled
                    and trial_id not in states[j].promotions)
                for trial_id in self._trials)
            quota = len(scores) // self._reduction_factor
            if settled and scores:
                quota = max(1, quota)
            ranked = [trial_id for trial_id in sorted(scores, key=lambda trial_id: -scores[trial_id])  # stable
                      if status.get(trial_id) != Trial.ERROR]
            states.append(_Rung(settled=settled, promotions=frozenset(ranked[:int(quota)])))
        return states
