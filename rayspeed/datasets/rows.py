"""Pure per-batch functions of the pipeline: tag rows (missing, split, hash) and shape model inputs.

Kept free of Ray so they are unit-testable on plain DataFrames.
"""

import numpy as np
import pandas as pd

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def tag_rows(batch: pd.DataFrame, *, columns: list[str], fractions: tuple[float, float], seed: int):
    """Keeps `columns`, and adds `_missing`, `_split` and `_hash`.

    The split is a function of the row's content and the seed alone, so it does not depend on file
    order or block layout, and identical rows always land in the same split (no leakage).
    """
    frame = batch[columns]
    hashes = pd.util.hash_pandas_object(frame, index=False, hash_key=_hash_key(seed)).to_numpy()
    unit = (hashes >> np.uint64(11)).astype(np.float64) / float(2**53)  # top 53 bits -> [0, 1)
    train_cut, val_cut = fractions[0], fractions[0] + fractions[1]
    split = np.where(unit < train_cut, 0, np.where(unit < val_cut, 1, 2)).astype(np.int8)
    return frame.assign(
        _missing=frame.isna().any(axis=1).to_numpy(),
        _split=split,
        _hash=(hashes >> np.uint64(1)).astype(np.int64),  # non-negative, used to share val/test by rank
    )


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


def block_stats(batch: pd.DataFrame, *, features: list[str], label: str) -> pd.DataFrame:
    """One row of statistics per block, combined by `combine_stats`: a single pass yields the missing
    count, rows per split, the class labels, and the train split's per-feature moments."""
    clean = batch[~batch["_missing"]]
    train = clean.loc[clean["_split"] == SPLIT_CODES["train"], features].to_numpy(dtype=np.float64)
    count = len(train)
    mean = train.mean(axis=0) if count else np.zeros(len(features))
    m2 = ((train - mean) ** 2).sum(axis=0) if count else np.zeros(len(features))
    return pd.DataFrame({
        "missing": [int(batch["_missing"].sum())],
        "split_rows": [np.bincount(clean["_split"].to_numpy(), minlength=3).tolist()],
        "labels": [sorted(set(clean[label].tolist()))],
        "train_rows": [count], "mean": [mean.tolist()], "m2": [m2.tolist()],
    })


def combine_stats(blocks: list[dict]) -> dict:
    """Merges per-block statistics; moments combine with Chan et al.'s parallel variance formula."""
    total, mean, m2 = 0, None, None
    for block in blocks:
        n_b, mean_b, m2_b = block["train_rows"], np.asarray(block["mean"]), np.asarray(block["m2"])
        if n_b == 0:
            continue
        if total == 0:
            total, mean, m2 = n_b, mean_b, m2_b
            continue
        delta = mean_b - mean
        combined = total + n_b
        mean = mean + delta * n_b / combined
        m2 = m2 + m2_b + delta**2 * total * n_b / combined
        total = combined
    split_rows = np.sum([block["split_rows"] for block in blocks], axis=0) if blocks else np.zeros(3)
    std = np.sqrt(m2 / total) if total else None
    return {
        "missing": int(sum(block["missing"] for block in blocks)),
        "split_rows": {name: int(split_rows[code]) for name, code in SPLIT_CODES.items()},
        "labels": sorted({value for block in blocks for value in block["labels"]}),
        "means": mean,
        "stds": None if std is None else np.where(std > 0, std, 1.0),  # constant columns stay at 0
    }
