"""What a finished run leaves behind for people: summary.json, plots, and the lines the CLI prints."""

import json
from dataclasses import asdict, dataclass

from rayspeed.trainers import plots
from rayspeed.trainers.run_storage import RunStorage
from rayspeed.trainers.tracking import read_metrics

SHOWN_METRICS = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


@dataclass(frozen=True)
class RunSummary:
    run_dir: str
    steps: int
    final: dict
    best_checkpoint: str | None
    best_metrics: dict
    files: list[str]

    def lines(self) -> list[str]:
        lines = [f"run: {self.run_dir} ({self.steps} steps)", f"final: {_shown(self.final)}"]
        if self.best_checkpoint:
            lines.append(f"best checkpoint: {self.best_checkpoint} ({_shown(self.best_metrics)})")
        lines += [f"wrote: {name}" for name in self.files]
        return lines


def _shown(metrics: dict) -> str:
    return ", ".join(f"{key} {metrics[key]:.4f}" for key in SHOWN_METRICS if key in metrics)


def summarize(storage: RunStorage, result, *, classes: list, score_metric: str | None,
              score_mode: str) -> RunSummary:
    """Writes summary.json and the plots into the run directory, and returns the summary."""
    rows = read_metrics(storage)
    final = {k: v for k, v in (rows[-1] if rows else {}).items() if not isinstance(v, list)}
    best, best_metrics = _best_checkpoint(result, score_metric, score_mode)
    best = storage.uri(best) if best else None
    files = []
    if rows:
        storage.write(plots.loss_curves(rows, title=storage.name), "loss_curves.png")
        files.append(storage.display("loss_curves.png"))
    confusion = rows[-1].get("test_confusion") if rows else None
    if confusion:
        storage.write(plots.confusion_matrix(confusion, classes, title=f"{storage.name}: test set"),
                      "confusion_matrix.png")
        files.append(storage.display("confusion_matrix.png"))
    summary = RunSummary(run_dir=storage.display(), steps=final.get("step", 0), final=final,
                         best_checkpoint=best, best_metrics=best_metrics, files=files)
    storage.write(json.dumps(asdict(summary), indent=2), "summary.json")
    return summary


def _best_checkpoint(result, score_metric: str | None, score_mode: str) -> tuple[str | None, dict]:
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if not score_metric or score_metric in m]
    if not candidates:
        return (result.checkpoint.path if result.checkpoint else None), {}
    if score_metric:
        pick = min if score_mode == "min" else max
        checkpoint, metrics = pick(candidates, key=lambda pair: pair[1][score_metric])
    else:
        checkpoint, metrics = candidates[-1]
    return checkpoint.path, {k: v for k, v in metrics.items() if not isinstance(v, list)}  # drops rows, confusion
