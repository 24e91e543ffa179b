"""One Tune trial: a full rayspeed run (`fit`, DeepSpeed workers, checkpoints, W&B) of the experiment
with the trial's values, driven one epoch per Tune iteration.

A class Trainable rather than a function: Tune asks it for each epoch's result (`step`), tells it to
stop (`cleanup`), and, when a scheduler pauses trials or clones them, to save and load checkpoints. The run trains
in a thread of the trial actor; its workers wait at every epoch end (`EpochGate`) until Tune has
decided, so a stopped trial ends at that epoch with its checkpoints and W&B run closed.

Runs are named after the trial id, so a restarted trial (a crash, an ASHA promotion after a pause,
`tune --resume`) resumes its own run. A PBT exploit starts a new run, `<trial>-from-<peer>-step<S>`,
whose `warm_start/` holds the peer's checkpoint of step S: its metrics continue from the peer's step.
"""

import contextlib
import json
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ray import tune

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.load import apply_overrides
from rayspeed.runs.guard import claim_run
from rayspeed.runs.layout import RAY_SNAPSHOT, WARM_START_DIR, checkpoint_dir_name
from rayspeed.runs.metrics_log import read_metrics
from rayspeed.runs.output import capture_output, keep_log, run_log_path
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers.driver import fit
from rayspeed.trainers.gate import EpochGate

SOURCE_FILE = "sweep_source.json"  # in a trial's Tune checkpoint: whose run and step it copies
TRIALS_FOLDER = "trials"  # the sweep directory's folder of trial runs
STOP_TIMEOUT_S = 300.0  # a stopped trial finishes its epoch and summary within this
CHECKPOINT_WAIT_S = 300.0


@dataclass(frozen=True)
class SweepSpec:
    """What every trial gets from the sweep (through the object store, not the trial's config)."""

    base: ExperimentConfig
    name: str
    trials_path: str
    wandb_mode: str


class TrialRun(tune.Trainable):
    """A Tune trial; `config` holds the sampled values by dotted config path."""

    def setup(self, config: dict, sweep: SweepSpec):
        self.sweep = sweep
        self.values = dict(config)
        self.run_name = self.trial_id  # a PBT exploit switches to a new run (load_checkpoint)
        self._warm_dir: str | None = None
        self._events: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._gate: EpochGate | None = None
        self._run_storage: RunStorage | None = None
        self._last_row: dict | None = None
        self._output = contextlib.ExitStack()

    def step(self) -> dict:
        if self._thread is None and self._last_row is None:
            self._begin()
        elif self._gate is not None:
            self._gate.allow(self._last_row["step"])  # Tune wants another epoch
        kind, payload = self._events.get()
        if kind == "error":
            raise payload
        if kind == "end":  # ended without a new row (a run finished before): its last row again
            return {**self._result(self._last_row or read_metrics(self._run_storage)[-1]), "done": True}
        self._last_row = payload
        return self._result(payload)

    def save_checkpoint(self, checkpoint_dir: str) -> str:
        """Which run and step this trial is at, once that epoch's checkpoint is registered; under PBT
        also a copy of the checkpoint, which Tune clones into peers. (ASHA saves to pause a trial:
        its resumed run restores its own checkpoint.)"""
        step = self._last_row["step"]
        name = checkpoint_dir_name(step)
        deadline = time.monotonic() + CHECKPOINT_WAIT_S
        while name not in (self._run_storage.read_text(RAY_SNAPSHOT) or ""):  # registered once every rank saved
            if time.monotonic() > deadline:
                raise TimeoutError(f"checkpoint {self._run_storage.display(name)} was not registered")
            time.sleep(0.2)
        if self.sweep.base.tune.scheduler.name == "pbt":
            self._run_storage.download(checkpoint_dir, name)
        source = {"trial": self.trial_id, "run": self.run_name, "step": step}
        (Path(checkpoint_dir) / SOURCE_FILE).write_text(json.dumps(source))
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        """This trial's own checkpoint (a restart): resume that run. A peer's (a PBT exploit): start
        a new run from a copy of it (the directory is Tune's and goes away after this call)."""
        source = json.loads((Path(checkpoint_dir) / SOURCE_FILE).read_text())
        if source["trial"] == self.trial_id:
            self.run_name = source["run"]
            return
        self.run_name = f"{self.trial_id}-from-{source['trial']}-step{source['step']}"
        self._warm_dir = tempfile.mkdtemp(prefix="rayspeed-warm-")
        shutil.copytree(checkpoint_dir, self._warm_dir, dirs_exist_ok=True)

    def cleanup(self) -> None:
        """Stopped (early, paused, for an exploit, or at the end): the workers stop at their epoch end and
        `fit` finishes normally (summary, W&B run finished)."""
        if self._thread is not None and self._thread.is_alive():
            self._gate.close()
            self._thread.join(STOP_TIMEOUT_S)
        if self._run_storage is not None:
            keep_log(self._run_storage, run_log_path(self._run_storage))
        self._output.close()
        if self._gate is not None:
            self._gate.shutdown()

    def _begin(self) -> None:
        sweep = self.sweep
        cfg = trial_config(sweep, self.values, run_name=self.run_name)
        storage = self._run_storage = RunStorage.open(cfg.run.storage_path, cfg.run.name)
        self._gate = EpochGate.create(name=f"rayspeed-trial-run:{storage.display()}")  # the run is ours now
        start = claim_run(cfg, storage)
        if self._warm_dir and not storage.exists(WARM_START_DIR) and not storage.exists(RAY_SNAPSHOT):
            storage.upload(self._warm_dir, WARM_START_DIR)
        if self._warm_dir:
            shutil.rmtree(self._warm_dir, ignore_errors=True)
        if (rows := read_metrics(storage)) and rows[-1].get("done"):
            self._events.put(("row", rows[-1]))  # finished before the sweep was interrupted: not run again
            return
        self._output.enter_context(capture_output(run_log_path(storage), verbose=False))
        print(f"[rayspeed] trial {self.trial_id}: {start.message}", flush=True)
        labels = {"sweep": {"name": sweep.name, "trial": self.trial_id, "values": self.values}}
        self._thread = threading.Thread(target=self._fit, args=(cfg, storage, start, labels),
                                        name="rayspeed-trial", daemon=True)
        self._thread.start()

    def _fit(self, cfg: ExperimentConfig, storage: RunStorage, start, labels: dict) -> None:
        try:
            fit(cfg, storage=storage, start=start, wandb_mode=self.sweep.wandb_mode,
                observers=[_EpochFeed(self._events)], gate=self._gate, wandb_labels=labels)
        except BaseException as error:  # re-raised by step(), in the actor's thread; a stopped trial's, logged
            print(f"[rayspeed] trial {self.trial_id}: {error!r}", flush=True)
            self._events.put(("error", error))
        else:
            self._events.put(("end", None))

    def _result(self, row: dict) -> dict:
        result = {key: value for key, value in row.items() if isinstance(value, (int, float))
                  and not isinstance(value, bool)}
        result.update(run=self.run_name, finished=bool(row.get("done")))
        if row.get("done"):
            result["done"] = True
        return result


def trial_config(sweep: SweepSpec, values: dict, *, run_name: str) -> ExperimentConfig:
    """The experiment with the trial's values, as a resumable run inside the sweep, grouped in W&B."""
    return apply_overrides(sweep.base, {
        **values, "run.name": run_name, "run.storage_path": sweep.trials_path, "run.resume": "auto",
        "tracking.group": sweep.name, "tune": None}, source=f"trial {run_name}")


class _EpochFeed:
    """A RunObserver handing each epoch's row to `step`."""

    def __init__(self, events: queue.Queue):
        self._events = events

    def preparing_data(self):
        return contextlib.nullcontext()

    def on_start(self, *, total_steps: int, first_step: int) -> None:
        pass

    def on_row(self, row: dict, *, epoch_end: bool, checkpoint: bool) -> None:
        if epoch_end:
            self._events.put(("row", row))

    def on_note(self, line: str) -> None:
        pass

    def close(self) -> None:
        pass
