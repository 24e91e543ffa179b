"""Pure per-batch functions of the pipeline: coerce each column to its kind and tag every row with
its split, its content hash and what is wrong with it. Kept free of Ray so they are unit-testable.
"""

import numpy as np
import pandas as pd

from rayspeed.config.data import SplitFractions
from rayspeed.datasets.columns import PATH_COLUMN, ColumnPlan
from rayspeed.datasets.values import as_categories, as_numbers

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SPLIT_FLAGS = {name: f"_in_{name}" for name in SPLIT_CODES}
# Why a row is not used: each row is counted under the first that applies.
DROP_FLAGS = {"_bad": "bad values", "_no_label": "no label", "_missing": "missing values"}


def tag_rows(batch: pd.DataFrame, *, plan: ColumnPlan, split: SplitFractions, seed: int, drop_missing: bool,
             source: str) -> pd.DataFrame:
    """The plan's columns coerced to their kinds (numbers float64, categories and text labels strings),
    its carried columns as they are, plus `_split`, one `_in_<split>` flag per split for usable rows, the
    drop flags, `_hash`, and `_bad_value` saying where a row's value that is not a number came from (the driver decides
    whether that fails the run: errors raised here would reach it without their message).

    The split is a function of the row's values and the seed alone, so it depends neither on file
    order nor on how the data was cut into blocks, and identical rows always land in the same split
    (no leakage).
    """
    frame = pd.DataFrame({name: _coerce(batch, name, numeric=_is_numeric(plan, name)) for name in plan.columns}
                         | {name: batch[name] for name in plan.carried}, index=batch.index)
    bad = _bad_values(batch, frame, plan)
    hashes = pd.util.hash_pandas_object(frame, index=False, hash_key=hash_key(seed)).to_numpy()
    flags = {"_bad": bad.any(axis=1).to_numpy(), "_no_label": frame[plan.label].isna().to_numpy(),
             "_missing": frame[plan.features].isna().any(axis=1).to_numpy() & drop_missing}
    first = np.zeros(len(frame), dtype=bool)  # a row is counted under the first reason only
    for name, flag in flags.items():
        flags[name] = flag & ~first
        first |= flag
    usable = ~first
    return frame.assign(
        **{name: flag.astype(np.int8) for name, flag in flags.items()}, _usable=usable.astype(np.int8),
        **split_tags(hashes, split, usable=usable), _bad_value=_describe_bad(batch, bad, source=source))


def split_tags(digests: np.ndarray, split: SplitFractions, *, usable: np.ndarray | None = None) -> dict:
    """From each row's 64-bit content hash: `_split`, one `_in_<split>` flag per split (usable rows
    only), and `_hash`, non-negative, which shares val and test rows out by rank."""
    codes = split_codes((digests >> np.uint64(11)).astype(np.float64) / float(2**53), split)  # top 53 bits
    usable = np.ones(len(digests), dtype=bool) if usable is None else usable
    return {"_split": codes, "_hash": (digests >> np.uint64(1)).astype(np.int64),
            **{flag: ((codes == SPLIT_CODES[name]) & usable).astype(np.int8) for name, flag in SPLIT_FLAGS.items()}}


def content_digests(contents: list[bytes], *, seed: int) -> np.ndarray:
    """The 64-bit hash of each row's bytes (pixels, tokens), keyed by the seed as table rows are."""
    return pd.util.hash_pandas_object(pd.Series(contents, dtype=object), index=False,
                                      hash_key=hash_key(seed)).to_numpy()


def _describe_bad(batch: pd.DataFrame, bad: pd.DataFrame, *, source: str) -> pd.Series:
    """"<file>: column 'x' holds 'abc'" for the first bad value of each bad row, missing elsewhere."""
    described = pd.Series(pd.NA, index=batch.index, dtype="string")
    paths = batch[PATH_COLUMN] if PATH_COLUMN in batch else pd.Series(source, index=batch.index)
    for column in reversed(bad.columns):  # the first bad column of a row wins
        rows = bad.index[bad[column].to_numpy()]
        described[rows] = [f"{paths[r]}: column {column!r} holds {batch[column][r]!r}" for r in rows]
    return described


def split_codes(unit: np.ndarray, split: SplitFractions) -> np.ndarray:
    """Split of each row from its hash in [0, 1): test is the top `test` share either way; the rest is
    cut at the train fraction, or into `folds` equal folds of which `fold` is val."""
    test_from = 1.0 - split.test
    if split.folds is None:
        inner = np.where(unit < split.train, 0, 1)
    else:
        fold = np.minimum((unit / test_from * split.folds).astype(np.int64), split.folds - 1)
        inner = np.where(fold == split.fold, 1, 0)
    return np.where(unit >= test_from, 2, inner).astype(np.int8)


def _is_numeric(plan: ColumnPlan, name: str) -> bool:
    return plan.numeric_label if name == plan.label else name not in plan.categorical


def _coerce(batch: pd.DataFrame, name: str, *, numeric: bool) -> pd.Series:
    """The same values with the same dtype whatever the block (an integer column with a null in one
    block arrives there as float64, and `1` and `1.0` must hash alike). A value that does not parse
    becomes missing here and is reported by `_bad_values`."""
    return as_numbers(batch[name]) if numeric else as_categories(batch[name])


def _bad_values(batch: pd.DataFrame, frame: pd.DataFrame, plan: ColumnPlan) -> pd.DataFrame:
    """True where a value was present in the source but did not parse as its column's kind."""
    return pd.DataFrame({name: frame[name].isna().to_numpy() & batch[name].notna().to_numpy()
                         for name in plan.columns}, index=batch.index)


def hash_key(seed: int) -> str:
    """pandas wants exactly 16 characters."""
    return f"rayspeed{seed & 0xFFFFFFFF:08x}"
