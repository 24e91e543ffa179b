"""What a person watching a sweep sees: on a terminal one compact table of the trials, updated in
place (trial, status, values, epoch, metric, best); otherwise one line per trial epoch and per
trial end. Tune's own progress output goes to the sweep's log with the rest of Ray's."""

import time

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rayspeed.runs.output import Terminal

REFRESH_S = 0.5


def trial_status(trial, *, complete: bool = False) -> str:
    """Tune's status, with early stopping told apart from finishing (`complete`: Tune is ending it)."""
    if complete or trial.status == "TERMINATED":
        return "finished" if (trial.last_result or {}).get("finished") else "stopped early"
    return {"ERROR": "error"}.get(trial.status, trial.status.lower())


def shown_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class TrialTable(Callback):
    """A Tune callback in the sweep's driver process."""

    def __init__(self, terminal: Terminal, *, paths: list[str], metric: str, mode: str):
        self._terminal, self._paths, self._metric, self._mode = terminal, paths, metric, mode
        self._best: dict[str, float] = {}
        self._paused: set[str] = set()
        self._live: Live | None = None
        self._drawn = 0.0

    def __getstate__(self) -> dict:
        """Tune pickles its RunConfig with the sweep's state: without the terminal (see `sweep`)."""
        return {**self.__dict__, "_terminal": None, "_live": None}

    def setup(self, **info) -> None:
        if self._terminal is not None and self._terminal.interactive:
            console = Console(file=self._terminal.out, force_terminal=True, highlight=False)
            self._live = Live(console=console, auto_refresh=False, transient=False)
            self._live.start()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        value = result.get(self._metric)
        if value is not None:
            best = self._best.get(trial.trial_id)
            better = best is None or (value > best if self._mode == "max" else value < best)
            self._best[trial.trial_id] = value if better else best
        if self._live is None:
            self._say(f"trial {trial.trial_id} epoch {result.get('epoch', 0):g} {self._metric} "
                      f"{shown_value(value)} ({self._values(trial)})")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self._live is None:
            epoch = (trial.last_result or {}).get("epoch", 0)
            status = trial_status(trial, complete=True)
            self._say(f"trial {trial.trial_id} {status} after epoch {epoch:g}, best {self._metric} "
                      f"{shown_value(self._best_of(trial))}")
        self._draw(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self._live is None:
            self._say(f"trial {trial.trial_id} failed: see {trial.local_path or trial.trial_id}/error.txt")
        self._draw(trials, force=True)

    def on_step_end(self, iteration, trials, **info) -> None:
        if self._live is None:
            self._say_pauses(trials)
        self._draw(trials)

    def on_experiment_end(self, trials, **info) -> None:
        self._draw(trials, force=True)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _draw(self, trials, *, force: bool = False) -> None:
        if self._live is None or (not force and time.monotonic() - self._drawn < REFRESH_S):
            return
        self._drawn = time.monotonic()
        table = Table(title="rayspeed sweep", title_justify="left", box=None, header_style="bold")
        for column in ["trial", "status", *self._paths, "epoch", self._metric, "best"]:
            table.add_column(column, justify="left" if column in ("trial", "status") else "right")
        for trial in trials:
            result = trial.last_result or {}
            table.add_row(trial.trial_id, trial_status(trial), *(shown_value(trial.config.get(p)) for p in self._paths),
                          shown_value(result.get("epoch", "")), shown_value(result.get(self._metric, "")),
                          shown_value("" if (best := self._best_of(trial)) is None else best))
        self._live.update(table, refresh=True)

    def _say_pauses(self, trials) -> None:
        """asha pauses trials at its rungs and resumes the ones it promotes."""
        paused = {t.trial_id for t in trials if t.status == "PAUSED"}
        for trial in trials:
            if trial.trial_id in paused - self._paused:
                epoch = (trial.last_result or {}).get("epoch", 0)
                self._say(f"trial {trial.trial_id} paused after epoch {epoch:g}, waiting for promotion")
            elif trial.trial_id in self._paused - paused and trial.status != "TERMINATED":
                self._say(f"trial {trial.trial_id} promoted: resuming")
        self._paused = paused

    def _best_of(self, trial) -> float | None:
        """Seen by this process, or (a resumed sweep's earlier epochs) by Tune's record of the trial."""
        if trial.trial_id in self._best:
            return self._best[trial.trial_id]
        return (trial.metric_analysis or {}).get(self._metric, {}).get(self._mode)

    def _values(self, trial) -> str:
        return ", ".join(f"{path}={shown_value(trial.config.get(path))}" for path in self._paths)

    def _say(self, line: str) -> None:
        if self._terminal is not None:
            self._terminal.say(line)
