"""The window steps of the table pipeline (`data.windows`): place each tagged row in time and split by
time (one pass for the time span), then cut each series into windows (a grouping by series, kept) and
count them in one more pass, which also measures the naive baseline: the label is the last row's."""

import dataclasses

import numpy as np
import ray.data
from ray.data.aggregate import Max, Min, Sum

from rayspeed.config.data import DataConfig
from rayspeed.datasets.preprocessing import Preprocessing, WindowTransform
from rayspeed.datasets.rows import SPLIT_FLAGS
from rayspeed.datasets.statistics import aggregate_streaming
from rayspeed.datasets.windows import SERIES, STEP, cut_windows, split_by_time, tag_time
from rayspeed.errors import DataError


def place_in_time(tagged: ray.data.Dataset, data: DataConfig, *, fitted: WindowTransform | None
                  ) -> tuple[ray.data.Dataset, WindowTransform]:
    """The tagged rows with `_step` and `_series`, split by time: by the span of a resumed run's
    `fitted` transform, else by the span of the usable rows' times (one pass).

    Raises:
        DataError: no usable row has a time.
    """
    windows = data.windows
    window = fitted or WindowTransform(time_column=windows.time_column, every=windows.every,
                                       series_column=windows.series_column, length=windows.length,
                                       horizon=windows.horizon, start=0.0, end=0.0)
    timed = tagged.map_batches(tag_time, batch_format="pandas", fn_kwargs={"window": window, "source": data.source})
    if fitted is None:
        span = aggregate_streaming(timed.filter(expr="_usable == 1").select_columns([STEP]),
                                   [Min(STEP, alias_name="start"), Max(STEP, alias_name="end")])
        if span["start"] is None or np.isnan(span["start"]):
            raise DataError(f"data.windows.time_column: no usable row of {data.source!r} has a time in "
                            f"{windows.time_column!r}")
        window = dataclasses.replace(window, start=float(span["start"]), end=float(span["end"]))
    return timed.map_batches(split_by_time, batch_format="pandas",
                             fn_kwargs={"start": window.start, "end": window.end, "split": data.split}), window


def cut_into_windows(timed: ray.data.Dataset, preprocessing: Preprocessing) -> tuple[ray.data.Dataset, dict, dict]:
    """The windows of every series, cut once and kept in the object store (grouping rows by series is
    an all-to-all pass: not one to repeat every epoch), their count per split, and the naive baselines
    of val and test: `<split>_mae_last_value` (regression, in the target's units) or
    `<split>_accuracy_last_class`."""
    windows = timed.filter(expr="_usable == 1").groupby(SERIES).map_groups(
        cut_windows, batch_format="pandas", fn_kwargs={"preprocessing": preprocessing}).materialize()
    view = windows.map_batches(_naive_view, batch_format="numpy")
    found = aggregate_streaming(view, [*(Sum(flag, alias_name=flag) for flag in SPLIT_FLAGS.values()),
                                       *(Sum(f"_naive:{name}", alias_name=name) for name in ("val", "test"))])
    split_rows = {name: int(found[flag] or 0) for name, flag in SPLIT_FLAGS.items()}
    baselines = {}
    for name in ("val", "test"):
        if split_rows[name]:
            error = found[name] / split_rows[name]
            baselines.update({f"{name}_mae_last_value": error * preprocessing.target_std}
                             if preprocessing.task == "regression" else {f"{name}_accuracy_last_class": 1 - error})
    return windows, split_rows, baselines


def window_rows(batch: dict, *, preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """Model rows of cut windows: `features`, `label`, `row_hash`."""
    return {name: batch[name] for name in ("features", "label", "row_hash")}


def _naive_view(batch: dict) -> dict:
    return {**{flag: batch[flag] for flag in SPLIT_FLAGS.values()},
            **{f"_naive:{name}": batch["_naive_error"] * batch[SPLIT_FLAGS[name]] for name in ("val", "test")}}
