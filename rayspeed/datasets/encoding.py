"""The fitted transform, one batch at a time: fill, clip, standardize, one-hot; labels to class
indices or standardized targets. Pure numpy/pandas, shared by training, evaluation and prediction."""

import numpy as np
import pandas as pd

from rayspeed.datasets.preprocessing import CategoricalColumn, NumericColumn, Preprocessing


def model_rows(batch: pd.DataFrame, *, preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """float32 `features`, `label` (int64 class index or float32 standardized target) and `row_hash`."""
    parts = [_numeric(batch[c.name], c)[:, None] for c in preprocessing.numeric]
    parts += [_one_hot(batch[c.name], c) for c in preprocessing.categorical]
    label = batch[preprocessing.label_column]
    if preprocessing.task == "regression":
        target = ((label.to_numpy(dtype=np.float64) - preprocessing.target_mean) / preprocessing.target_std)
        label = target.astype(np.float32)
    else:
        label = label.map({c: i for i, c in enumerate(preprocessing.classes)}).to_numpy(dtype=np.int64)
    return {"features": np.concatenate(parts, axis=1).astype(np.float32), "label": label,
            "row_hash": batch["_hash"].to_numpy(dtype=np.int64)}


def _numeric(column: pd.Series, spec: NumericColumn) -> np.ndarray:
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if spec.fill is not None:
        values = np.where(np.isnan(values), spec.fill, values)
    if spec.clip is not None:
        values = np.clip(values, *spec.clip)
    return (values - spec.mean) / spec.std


def _one_hot(column: pd.Series, spec: CategoricalColumn) -> np.ndarray:
    if spec.fill is not None:
        column = column.fillna(spec.fill)
    index = column.map({value: slot for slot, value in enumerate(spec.vocabulary, start=1)})
    slots = index.fillna(0).to_numpy(dtype=np.int64)  # unknown and missing values: slot 0
    out = np.zeros((len(slots), len(spec.vocabulary) + 1), dtype=np.float32)
    out[np.arange(len(slots)), slots] = 1.0
    return out
