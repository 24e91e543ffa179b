"""Pure per-batch functions of the pipeline: tag rows (missing, split, hash) and shape model inputs.

Kept free of Ray so they are unit-testable on plain DataFrames.
"""

import numpy as np
import pandas as pd

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SPLIT_FLAGS = {name: f"_in_{name}" for name in SPLIT_CODES}


def tag_rows(batch: pd.DataFrame, *, columns: list[str], fractions: tuple[float, float], seed: int):
    """Keeps `columns`, and adds `_missing`, `_split`, one `_in_<split>` flag per split, and `_hash`.

    The split is a function of the row's values and the seed alone, so it depends neither on file
    order nor on how the data was cut into blocks (see `canonical_values`), and identical rows always
    land in the same split (no leakage). Rows with a missing value get no split flag.
    """
    frame = batch[columns]
    hashes = pd.util.hash_pandas_object(canonical_values(frame), index=False, hash_key=_hash_key(seed)).to_numpy()
    unit = (hashes >> np.uint64(11)).astype(np.float64) / float(2**53)  # top 53 bits -> [0, 1)
    train_cut, val_cut = fractions[0], fractions[0] + fractions[1]
    split = np.where(unit < train_cut, 0, np.where(unit < val_cut, 1, 2)).astype(np.int8)
    missing = frame.isna().any(axis=1).to_numpy()
    flags = {flag: ((split == SPLIT_CODES[name]) & ~missing).astype(np.int8) for name, flag in SPLIT_FLAGS.items()}
    return frame.assign(
        _missing=missing.astype(np.int8),
        _split=split,
        **flags,
        _hash=(hashes >> np.uint64(1)).astype(np.int64),  # non-negative, used to share val/test by rank
    )


def canonical_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The same values with the same dtypes whatever the block: every numeric or boolean column as
    float64 (an integer column with a null in one block arrives there as float64, and `1` and `1.0`
    hash differently), an all-null column as float64 NaN, anything else as strings."""
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column) or column.isna().all():
            columns[name] = pd.to_numeric(column, errors="coerce").astype("float64")
        else:
            columns[name] = column.astype("string")
    return pd.DataFrame(columns, index=frame.index)


def model_rows(batch: pd.DataFrame, *, features: list[str], label: str, means: np.ndarray,
               stds: np.ndarray, class_index: dict) -> dict[str, np.ndarray]:
    """Standardized float32 feature matrix, class index labels, and the row hash."""
    values = batch[features].to_numpy(dtype=np.float64)
    return {
        "features": ((values - means) / stds).astype(np.float32),
        "label": batch[label].map(class_index).to_numpy(dtype=np.int64),
        "row_hash": batch["_hash"].to_numpy(dtype=np.int64),
    }


def _hash_key(seed: int) -> str:
    """pandas wants exactly 16 characters."""
    return f"rayspeed{seed & 0xFFFFFFFF:08x}"
