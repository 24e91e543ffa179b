"""What a finished run leaves behind for people: summary.json, plots, and the lines the CLI prints."""

import json
from dataclasses import asdict, dataclass

from rayspeed.runs import plots
from rayspeed.runs.layout import CONFUSION_MATRIX_FILE, LOG_FILE, LOSS_CURVES_FILE, SUMMARY_FILE
from rayspeed.runs.metrics_log import read_metrics
from rayspeed.runs.storage import RunStorage

SHOWN_METRICS = ("train_loss", "val_loss", "val_accuracy", "val_f1", "val_rmse", "val_mae", "val_r2", "val_perplexity",
                 "test_loss", "test_accuracy", "test_f1", "test_rmse", "test_mae", "test_r2", "test_perplexity",
                 "tokens_per_s")


@dataclass(frozen=True)
class RunSummary:
    run_dir: str
    steps: int
    final: dict
    best_checkpoint: str | None
    best_metrics: dict
    files: list[str]
    baselines: dict  # what the data alone predicts, e.g. `val_perplexity_unigram`
    wandb: str = ""  # the W&B run's page, or its offline directory

    def lines(self) -> list[str]:
        lines = [f"run: {self.run_dir} ({self.steps} steps)", f"final: {shown(self.final)}"]
        if self.final.get("stopped_early"):
            lines.append(f"stopped early at step {self.steps}: no improvement in the last checkpoints; test metrics "
                         f"are the best checkpoint's (step {self.final['best_step']})")
        elif "best_step" in self.final:
            lines.append(f"early stopping's patience was never met; test metrics are the best checkpoint's "
                         f"(step {self.final['best_step']})")
        for name, value in self.baselines.items():  # `val_perplexity_unigram` beside the final val_perplexity
            metric = max((m for m in self.final if name.startswith(f"{m}_")), key=len, default=None)
            beside = f" (final {metric} {self.final[metric]:.4f})" if metric else ""
            lines.append(f"baseline: {name} {value:.4f}{beside}")
        if self.best_checkpoint:
            lines.append(f"best checkpoint: {self.best_checkpoint} ({shown(self.best_metrics)})")
        lines += [f"wrote: {name}" for name in self.files]
        if self.wandb:
            lines.append(f"W&B: {self.wandb}")
        return lines


def shown(metrics: dict) -> str:
    return ", ".join(f"{key} {metrics[key]:.4f}" if abs(metrics[key]) < 1000 else f"{key} {metrics[key]:.0f}"
                     for key in SHOWN_METRICS if key in metrics)


def summarize(storage: RunStorage, *, best_checkpoint: str | None, best_metrics: dict, classes: list,
              baselines: dict | None = None, wandb: str = "") -> RunSummary:
    """Writes summary.json and the plots into the run directory, and returns the summary.

    Args:
        baselines: `<metric>_<how>` -> the value the data alone reaches (printed beside the metric).
        wandb: where the run's W&B run is (its page, or its offline directory).
    """
    rows = read_metrics(storage)
    final = scalars_of(rows[-1]) if rows else {}
    files = []
    if rows:
        storage.write(plots.loss_curves(rows, title=storage.name), LOSS_CURVES_FILE)
        files.append(storage.display(LOSS_CURVES_FILE))
    confusion = rows[-1].get("test_confusion") if rows else None
    if confusion:
        storage.write(plots.confusion_matrix(confusion, classes, title=f"{storage.name}: test set"),
                      CONFUSION_MATRIX_FILE)
        files.append(storage.display(CONFUSION_MATRIX_FILE))
    files.append(storage.display(LOG_FILE))
    summary = RunSummary(run_dir=storage.display(), steps=final.get("step", 0), final=final,
                         best_checkpoint=best_checkpoint, best_metrics=scalars_of(best_metrics), files=files,
                         baselines=baselines or {}, wandb=wandb)
    storage.write(json.dumps(asdict(summary), indent=2), SUMMARY_FILE)
    return summary


def scalars_of(metrics: dict) -> dict:
    """Drops the lists (carried rows, confusion matrices) from a metrics dict."""
    return {key: value for key, value in metrics.items() if not isinstance(value, (list, dict))}
