"""The fitted transform, one batch at a time: fill, clip, standardize, one-hot; labels to class
indices or standardized targets. Pure numpy/pandas, shared by training, evaluation and prediction."""

import numpy as np
import pandas as pd

from rayspeed.datasets.preprocessing import CategoricalColumn, NumericColumn, Preprocessing
from rayspeed.datasets.values import as_categories, as_numbers


def model_rows(batch: pd.DataFrame, *, preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """float32 `features`, and where the batch has them, `label` (int64 class index or float32
    standardized target) and `row_hash`. Raw rows as read work as well as the pipeline's tagged ones."""
    parts = [_numeric(batch[c.name], c)[:, None] for c in preprocessing.numeric]
    parts += [_one_hot(batch[c.name], c) for c in preprocessing.categorical]
    rows = {"features": np.concatenate(parts, axis=1).astype(np.float32)}
    if preprocessing.label_column in batch:
        label = batch[preprocessing.label_column]
        if preprocessing.task == "regression":
            target = (as_numbers(label).to_numpy() - preprocessing.target_mean) / preprocessing.target_std
            rows["label"] = target.astype(np.float32)
        else:
            rows["label"] = label.map({c: i for i, c in enumerate(preprocessing.classes)}).to_numpy(dtype=np.int64)
    if "_hash" in batch:
        rows["row_hash"] = batch["_hash"].to_numpy(dtype=np.int64)
    return rows


def _numeric(column: pd.Series, spec: NumericColumn) -> np.ndarray:
    values = as_numbers(column).to_numpy()
    if spec.fill is not None:
        values = np.where(np.isnan(values), spec.fill, values)
    if spec.clip is not None:
        values = np.clip(values, *spec.clip)
    return (values - spec.mean) / spec.std


def _one_hot(column: pd.Series, spec: CategoricalColumn) -> np.ndarray:
    column = as_categories(column)
    if spec.fill is not None:
        column = column.fillna(spec.fill)
    index = column.map({value: slot for slot, value in enumerate(spec.vocabulary, start=1)})
    slots = index.fillna(0).to_numpy(dtype=np.int64)  # unknown and missing values: slot 0
    out = np.zeros((len(slots), len(spec.vocabulary) + 1), dtype=np.float32)
    out[np.arange(len(slots)), slots] = 1.0
    return out
