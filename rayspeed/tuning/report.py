"""What a finished sweep leaves in its directory for people: every trial (sweep.json), the best one
(best.json, and best_config.yaml to train it again), and the sweep plots."""

import json
import math
from dataclasses import dataclass

import yaml
from ray.tune import ResultGrid

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.load import apply_overrides
from rayspeed.config.redact import redact
from rayspeed.config.tune import dimension
from rayspeed.runs import sweep_plots
from rayspeed.runs.layout import (
    BEST_CONFIG_FILE,
    BEST_FILE,
    LOG_FILE,
    SUMMARY_FILE,
    SWEEP_CURVES_FILE,
    SWEEP_FILE,
    SWEEP_VALUES_FILE,
)
from rayspeed.runs.storage import RunStorage
from rayspeed.runs.summary import shown
from rayspeed.tuning.progress import shown_value
from rayspeed.tuning.trial import TRIALS_FOLDER

HISTORY_KEYS = ("epoch", "step", "train_loss", "val_loss", "val_accuracy", "run")


@dataclass(frozen=True)
class SweepSummary:
    sweep_dir: str
    trials: list[dict]
    best: dict | None
    files: list[str]
    wandb: str = ""  # the sweep's own W&B run: its page, or its offline directory

    def lines(self) -> list[str]:
        counts = {status: sum(t["status"] == status for t in self.trials)
                  for status in ("finished", "stopped early", "error")}
        epochs = sum(len(t["history"]) for t in self.trials)
        lines = [f"sweep: {self.sweep_dir} ({len(self.trials)} trials: "
                 + ", ".join(f"{n} {status}" for status, n in counts.items()) + f"; {epochs} trial-epochs)"]
        if self.best:
            best = self.best
            values = ", ".join(f"{path}={shown_value(value)}" for path, value in best["values"].items())
            lines.append(f"best trial: {best['trial']} ({values}) at epoch {best['epoch']:g}: {shown(best['metrics'])}")
            if best["checkpoint"]:
                lines.append(f"best checkpoint: {best['checkpoint']}")
        lines += [f"wrote: {name}" for name in self.files]
        if self.wandb:
            lines.append(f"W&B: {self.wandb}")
        return lines


def summarize_sweep(cfg: ExperimentConfig, results: ResultGrid, storage: RunStorage) -> SweepSummary:
    """Writes sweep.json, best.json, best_config.yaml and the plots; returns the summary."""
    tune_cfg = cfg.tune
    metric, mode = tune_cfg.metric, tune_cfg.objective_mode
    trials = sorted((_trial(result, metric, mode) for result in results), key=lambda t: t["trial"])
    best = _best(cfg, trials, mode, storage)
    storage.write(json.dumps(trials, indent=2, default=str), SWEEP_FILE)
    files = [SWEEP_FILE]
    if best:
        storage.write(json.dumps(best, indent=2), BEST_FILE)
        best_cfg = apply_overrides(cfg, {**best["values"], "run.name": f"{cfg.run.name}-best",
                                                  "run.resume": "never", "tune": None},
                                   source="best trial")
        storage.write(yaml.safe_dump(redact(best_cfg.model_dump(mode="json")), sort_keys=False), BEST_CONFIG_FILE)
        files += [BEST_FILE, BEST_CONFIG_FILE]
    paths = list(tune_cfg.space)
    log_paths = {path for path, spec in tune_cfg.space.items() if "log" in dimension(spec)[0]}
    title = f"sweep {cfg.run.name}"
    storage.write(sweep_plots.metric_by_value(trials, paths=paths, log_paths=log_paths, metric=metric, title=title),
                  SWEEP_VALUES_FILE)
    storage.write(sweep_plots.learning_curves(trials, metric=metric, best_trial=best and best["trial"], title=title),
                  SWEEP_CURVES_FILE)
    files += [SWEEP_VALUES_FILE, SWEEP_CURVES_FILE, LOG_FILE]
    return SweepSummary(sweep_dir=storage.display(), trials=trials, best=best,
                        files=[storage.display(name) for name in files])


def _trial(result, metric: str, mode: str) -> dict:
    frame = result.metrics_dataframe
    rows = [] if frame is None else frame.to_dict("records")
    history = [{key: row[key] for key in HISTORY_KEYS if key in row and _present(row[key])} for row in rows]
    scored = [row for row in history if metric in row]
    best = (max if mode == "max" else min)(scored, key=lambda row: row[metric]) if scored else None
    last = result.metrics or {}
    status = "error" if result.error else "finished" if last.get("finished") else "stopped early"
    return {"trial": last.get("trial_id") or result.path.rstrip("/").rsplit("/", 1)[-1], "status": status,
            "values": dict(result.config or {}), "best": best[metric] if best else None,
            "best_epoch": best["epoch"] if best else None, "best_run": best.get("run") if best else None,
            "history": history, "error": str(result.error).strip().splitlines()[-1] if result.error else None}


def _best(cfg: ExperimentConfig, trials: list[dict], mode: str, storage: RunStorage) -> dict | None:
    scored = [t for t in trials if t["best"] is not None]
    if not scored:
        return None
    best = (max if mode == "max" else min)(scored, key=lambda t: t["best"])
    row = next(r for r in best["history"] if r.get("epoch") == best["best_epoch"] and r.get("run") == best["best_run"])
    run = storage.nested(TRIALS_FOLDER, best["best_run"])
    summary = json.loads(run.read_text(SUMMARY_FILE) or "{}")
    return {"trial": best["trial"], "values": best["values"], "epoch": best["best_epoch"],
            "metrics": {k: v for k, v in row.items() if k not in ("run",)}, "run": run.display(),
            "checkpoint": summary.get("best_checkpoint")}


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
