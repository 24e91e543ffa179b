"""`rayspeed evaluate`: one checkpoint of a finished (or stopped) run measured over one split. The split
is rebuilt by the run's own pipeline with the checkpoint's fitted preprocessing, so it holds exactly
the rows training held back; the consolidated model runs over it in a Ray Data actor pool; the
scores, and every row's prediction, are written next to the run and set in the run's W&B summary."""

import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.images import Augmentation
from rayspeed.datasets import build_datasets
from rayspeed.datasets.preprocessing import Preprocessing
from rayspeed.errors import DataError
from rayspeed.runs.layout import EVALUATION_DIR
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers.export import consolidate_checkpoint
from rayspeed.trainers.inference import class_names, prediction_columns, predictions
from rayspeed.trainers.scores import classification_scores, language_model_scores, regression_scores
from rayspeed.trainers.tracking import results_run
from rayspeed.trainers.wandb_media import classification_media

METRICS_NAME, PREDICTIONS_NAME = "metrics.json", "predictions.parquet"


@dataclass(frozen=True)
class Evaluation:
    scores: dict  # the task's scores, plus the checkpoint, step and split
    directory: str  # where metrics.json and predictions.parquet were written (for display)


def evaluate_checkpoint(cfg: ExperimentConfig, storage: RunStorage, *, split: str, which: str, wandb_mode: str,
                        warn: Callable[[str], None]) -> Evaluation:
    """Needs a connected Ray.

    Raises:
        RunStateError: no such checkpoint, or a damaged one.
        DataError: the split holds no rows.
    """
    consolidated = consolidate_checkpoint(cfg.model, storage, zero_stage=cfg.train.zero_stage, which=which, warn=warn)
    fitted = Preprocessing.from_dict(consolidated.preprocessing)
    # The pictures of the train split as they are: augmentation is for training only.
    data = cfg.data.model_copy(update={"image": cfg.data.image.model_copy(update={"augment": Augmentation()})})
    prepared = build_datasets(data, seed=cfg.train.seed, fitted=fitted)
    if not prepared.split_rows.get(split):
        raise DataError(f"--split {split}: the run's data.split gives it no rows ({prepared.describe()})")
    predicted = predictions(prepared.datasets[split], consolidated.model,
                            model_config=cfg.model.model_dump(mode="json"), preprocessing=consolidated.preprocessing,
                            actors=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                            keep=("row_hash",) if fitted.task == "language_modeling" else ("label", "row_hash"))
    rows = _gathered(predicted.iter_batches(batch_size=None, batch_format="numpy"))
    source = consolidated.source
    scores = {"split": split, "checkpoint": source["checkpoint"], "step": source["step"], **_scores(rows, fitted)}
    folder = storage.unused(EVALUATION_DIR, f"{source['checkpoint']}-{split}")  # an earlier one is kept
    storage.write(json.dumps(scores, indent=2), folder, METRICS_NAME)
    storage.write(_parquet(rows, fitted), folder, PREDICTIONS_NAME)
    try:
        _to_wandb(cfg, storage, scores, mode=wandb_mode)
    except Exception as error:  # the evaluation itself is written
        warn(f"W&B did not take the scores ({error!r}); they are in {storage.display(folder)}")
    return Evaluation(scores=scores, directory=storage.display(folder))


def _gathered(batches) -> dict[str, np.ndarray]:
    """Every row's outputs, ordered by row hash: the same order whatever the actors' order was."""
    parts = list(batches)
    rows = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    order = np.argsort(rows["row_hash"], kind="stable")
    return {name: values[order] for name, values in rows.items()}


def _scores(rows: dict[str, np.ndarray], fitted: Preprocessing) -> dict:
    if fitted.task == "classification":
        return classification_scores(rows["label"], rows["probabilities"].astype(np.float64), fitted.classes)
    if fitted.task == "regression":
        return regression_scores(_labels(rows, fitted), rows["prediction"])
    return language_model_scores(rows["loss"])


def _parquet(rows: dict[str, np.ndarray], fitted: Preprocessing) -> bytes:
    """One row per evaluated row: its hash, its label (none for language modelling) and what the model gave."""
    labels = {} if fitted.task == "language_modeling" else {"label": _labels(rows, fitted)}
    buffer = io.BytesIO()
    pq.write_table(pa.table({"row_hash": rows["row_hash"], **labels, **prediction_columns(rows, fitted)}), buffer)
    return buffer.getvalue()


def _labels(rows: dict[str, np.ndarray], fitted: Preprocessing) -> np.ndarray:
    """The labels in the data's terms: class names, or the target in its units."""
    if fitted.task == "classification":
        return class_names(fitted)[rows["label"]]
    return rows["label"].astype(np.float64) * fitted.target_std + fitted.target_mean


def _to_wandb(cfg: ExperimentConfig, storage: RunStorage, scores: dict, *, mode: str) -> None:
    """The scores in the run's own W&B run: scalars in its summary as `evaluate/<split>/<name>`, and a
    classification's confusion chart and per-class table on a step after the run's last."""
    split = scores["split"]
    summary = {f"evaluate/{split}/{name}": value for name, value in scores.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    summary |= {f"evaluate/{split}/{name}/{metric}": value for name, per_class in scores.get("per_class", {}).items()
                for metric, value in per_class.items()}
    summary[f"evaluate/{split}/checkpoint"] = scores["checkpoint"]
    with results_run(cfg.tracking, storage, mode=mode, summary=summary) as run:
        if run is not None and "confusion" in scores:
            run.log_media(classification_media(f"evaluate/{split}", scores["confusion"], scores["classes"],
                                               per_class=scores["per_class"]), after_last=True)
