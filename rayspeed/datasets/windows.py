"""Windows of consecutive rows, as pure per-batch functions: each row's position in time (in steps of
`every`), splits by time, and one series' rows cut into windows labelled by a later row."""

import numpy as np
import pandas as pd

from rayspeed.config.data import SplitFractions
from rayspeed.config.windows import WindowConfig
from rayspeed.datasets.columns import PATH_COLUMN
from rayspeed.datasets.encoding import model_rows
from rayspeed.datasets.preprocessing import Preprocessing, WindowTransform
from rayspeed.datasets.rows import SPLIT_CODES, SPLIT_FLAGS
from rayspeed.errors import DataError

STEP, SERIES = "_step", "_series"


def time_steps(values: pd.Series, every: str) -> np.ndarray:
    """Each value's time in units of `every` (consecutive rows differ by exactly 1); NaN where a value
    is not a time (or not a number, for number columns)."""
    if not _is_number(every):
        times = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        return ((times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(every)).to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) / float(every)


def check_time_column(sample: pd.DataFrame, windows: WindowConfig) -> None:
    """The first rows' times must parse the way `every` reads them (numbers for a number, times for a
    duration): a mismatch would make every row a gap, or a bad row.

    Raises:
        DataError: naming `data.windows.every` or `time_column` and a value.
    """
    values = sample[windows.time_column].dropna()
    if values.empty:
        return
    steps = time_steps(values, windows.every)
    numeric_every = _is_number(windows.every)
    head = values.head(20)
    looks_like_times = pd.api.types.is_datetime64_any_dtype(values) or (
        pd.to_numeric(head, errors="coerce").isna().all()
        and pd.to_datetime(head, errors="coerce", utc=True, format="mixed").notna().all())
    if numeric_every and looks_like_times:
        raise DataError(f"data.windows.every: {windows.time_column!r} holds times (e.g. {values.iloc[0]!r}); give a "
                        f"duration like '1h' instead of {windows.every!r}")
    if np.isnan(steps).all():
        expected = "numbers" if numeric_every else f"times (every is {windows.every!r})"
        raise DataError(f"data.windows.time_column: {windows.time_column!r} holds {values.iloc[0]!r}, not {expected}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def tag_time(batch: pd.DataFrame, *, window: WindowTransform, source: str) -> pd.DataFrame:
    """Adds `_step` and `_series` (its name as text; empty without a series column); a row whose time
    does not parse becomes a bad row, its value named in `_bad_value`."""
    steps = time_steps(batch[window.time_column], window.every)
    series = batch[window.series_column].astype("string").fillna("") if window.series_column else ""
    unparsed = np.isnan(steps) & (batch["_usable"] == 1).to_numpy()
    if unparsed.any():
        paths = batch[PATH_COLUMN] if PATH_COLUMN in batch else pd.Series(source, index=batch.index)
        batch = batch.copy()
        batch.loc[unparsed, "_bad_value"] = [f"{paths[i]}: column {window.time_column!r} holds "
                                             f"{batch[window.time_column][i]!r}, not a time"
                                             for i in batch.index[unparsed]]
        for column in ["_usable", *SPLIT_FLAGS.values()]:
            batch.loc[unparsed, column] = 0
        batch.loc[unparsed, "_bad"] = 1
    return batch.assign(**{STEP: steps, SERIES: series})


def split_by_time(batch: pd.DataFrame, *, start: float, end: float, split: SplitFractions) -> pd.DataFrame:
    """`_split` and the split flags from each row's place in the time span [start, end]: the first
    `train` share trains, the next `val` validates, the rest tests."""
    place = (batch[STEP].to_numpy() - start) / max(end - start, 1e-12)
    codes = np.where(place < split.train, 0, np.where(place < split.train + split.val, 1, 2)).astype(np.int8)
    usable = (batch["_usable"] == 1).to_numpy()
    flags = {flag: ((codes == SPLIT_CODES[name]) & usable).astype(np.int8) for name, flag in SPLIT_FLAGS.items()}
    return batch.assign(_split=codes, **flags)


def cut_windows(group: pd.DataFrame, *, preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """One series' usable rows as windows: `features` (each window's rows' features, oldest first,
    flattened), the `label` of the row `horizon` after it, that row's `row_hash`, split and flags, and
    `_naive_error`: how far the label is from the window's last row's (regression, standardized), or
    whether they differ (classes): the error of predicting that nothing changes. A window over a gap
    (rows not one step apart) is left out."""
    window = preprocessing.window
    group = group.sort_values(STEP, kind="stable")
    rows = model_rows(group, preprocessing=preprocessing)
    span = window.length - 1 + window.horizon  # rows from a window's first to its label's
    firsts = np.arange(max(len(group) - span, 0))
    # One step apart within float error (steps are times divided by `every`); duplicates and gaps break.
    breaks = np.cumsum(np.concatenate([[0], np.abs(np.diff(group[STEP].to_numpy()) - 1) > 1e-6]))
    firsts = firsts[breaks[firsts + span] == breaks[firsts]]
    lasts, targets = firsts + window.length - 1, firsts + span
    width = window.length * rows["features"].shape[1]
    features = rows["features"][firsts[:, None] + np.arange(window.length)].reshape(len(firsts), width)
    label = rows["label"]
    codes = group["_split"].to_numpy()[targets]
    if preprocessing.task == "regression":
        naive = np.abs(label[targets] - label[lasts]).astype(np.float64)
    else:
        naive = (label[targets] != label[lasts]).astype(np.float64)
    return {"features": features.astype(np.float32), "label": label[targets], "row_hash": rows["row_hash"][targets],
            "_naive_error": naive, **{flag: (codes == SPLIT_CODES[name]).astype(np.int8)
                                      for name, flag in SPLIT_FLAGS.items()}}
