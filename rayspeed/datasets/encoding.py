"""The fitted transform, one batch at a time: fill, clip, standardize, one-hot; labels to class
indices or standardized targets. Pure numpy/pandas, shared by training, evaluation and prediction."""

import numpy as np
import pandas as pd

from rayspeed.datasets.preprocessing import CategoricalColumn, NumericColumn, Preprocessing
from rayspeed.datasets.values import as_categories, as_numbers


def model_rows(batch: pd.DataFrame, *, preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """float32 `features` (numbers, then one-hot slots), int64 `categories` (slot numbers, under
    `categorical_encoding: ids`), and where the batch has them, `label` (int64 class index or float32
    standardized target) and `row_hash`. Raw rows as read work as well as the pipeline's tagged ones."""
    parts = [_numeric(batch[c.name], c)[:, None] for c in preprocessing.numeric]
    rows = {}
    if preprocessing.categorical_encoding == "ids" and preprocessing.categorical:
        rows["categories"] = np.stack([_slots(batch[c.name], c) for c in preprocessing.categorical], axis=1)
    else:
        parts += [_one_hot(_slots(batch[c.name], c), c) for c in preprocessing.categorical]
    rows["features"] = (np.concatenate(parts, axis=1) if parts else np.zeros((len(batch), 0))).astype(np.float32)
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


def _slots(column: pd.Series, spec: CategoricalColumn) -> np.ndarray:
    """Each value's slot: its place in the vocabulary from 1, or 0 for unknown and missing values."""
    column = as_categories(column)
    if spec.fill is not None:
        column = column.fillna(spec.fill)
    index = column.map({value: slot for slot, value in enumerate(spec.vocabulary, start=1)})
    return index.fillna(0).to_numpy(dtype=np.int64)


def _one_hot(slots: np.ndarray, spec: CategoricalColumn) -> np.ndarray:
    out = np.zeros((len(slots), len(spec.slots)), dtype=np.float32)
    out[np.arange(len(slots)), slots] = 1.0
    return out
