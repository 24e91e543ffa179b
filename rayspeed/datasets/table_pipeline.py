"""The table pipeline: read -> tag (coerce, split, hash, drop reasons) -> [deduplicate] -> [windows:
place in time, split by time] -> one statistics pass -> fit on train -> [windows: cut] -> encode each
split. It runs in the driver; nothing is materialized
but what `data.cache` asks for, and Ray Train streams the train split to the workers in shards.
"""

import dataclasses

import ray.data
from ray.data.context import ShuffleStrategy

from rayspeed.config.data import DataConfig
from rayspeed.datasets.columns import SAMPLE_ROWS, ColumnPlan, plan_columns
from rayspeed.datasets.dedup import drop_duplicates
from rayspeed.datasets.encoding import model_rows
from rayspeed.datasets.fitting import clip_bounds, fit_preprocessing
from rayspeed.datasets.prepared import PreparedData, encode_splits, named_data_errors
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.datasets.readers import read_source
from rayspeed.datasets.rows import DROP_FLAGS, tag_rows
from rayspeed.datasets.statistics import DataStats, measure
from rayspeed.datasets.window_pipeline import cut_into_windows, place_in_time, window_rows
from rayspeed.datasets.windows import check_time_column
from rayspeed.errors import DataError


def build_table_datasets(data: DataConfig, *, seed: int, fitted: Preprocessing | None = None) -> PreparedData:
    """Builds the splits from one statistics pass over the source (two when clipping: the moments of
    the clipped values; two more to find and keep duplicates).

    Args:
        data: the `data` section.
        seed: the split and file-order seed (`train.seed`).
        fitted: the preprocessing a resumed run was trained with; reused instead of refitted.

    Raises:
        DataError: unreadable source (naming the file), bad columns or values, rejected missing values,
            an empty source or split.
    """
    with named_data_errors(data):
        source = read_source(data, seed=seed)
        sample = source.limit(SAMPLE_ROWS).to_pandas()
        plan = plan_columns(sample, data, source=data.source)
        # Deduplication's grouped count runs as plain tasks: the default hash shuffle would first start
        # a pool of aggregator actors (about 6 s on 2 cores).
        source.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        tagged = source.map_batches(tag_rows, batch_format="pandas", fn_kwargs={
            "plan": plan, "split": data.split, "seed": seed, "drop_missing": data.missing in ("drop", "reject"),
            "source": data.source})
        duplicates = 0
        if data.deduplicate:
            tagged, duplicates = drop_duplicates(tagged)
        window = None
        if data.windows:
            check_time_column(sample, data.windows)
            tagged, window = place_in_time(tagged, data, fitted=fitted.window if fitted else None)
        stats = measure(tagged, plan, data)
        _check_counts(stats, plan, data)
        preprocessing = fitted or dataclasses.replace(_fit(tagged, stats, plan, data), window=window)
        dropped = {why: stats.counts[flag] for flag, why in DROP_FLAGS.items()} | {"duplicates": duplicates}
        split_rows, baselines, rows, encode = stats.split_rows, {}, tagged, model_rows
        if data.windows:
            rows, split_rows, baselines = cut_into_windows(tagged, preprocessing)
            dropped["no full window before them"] = sum(stats.split_rows.values()) - sum(split_rows.values())
            encode = window_rows
        datasets = encode_splits(rows, encode, preprocessing=preprocessing, data=data, seed=seed,
                                 batch_format="numpy" if data.windows else "pandas", train_rows=split_rows["train"])
    return PreparedData(datasets=datasets, preprocessing=preprocessing, input_spec=InputSpec.of(preprocessing),
                        rows_read=stats.counts["rows"] + duplicates, dropped=dropped,
                        missing_values={c: stats.counts[f"missing:{c}"] for c in plan.features},
                        split_rows=split_rows, baselines=baselines)


def _fit(tagged: ray.data.Dataset, stats: DataStats, plan: ColumnPlan, data: DataConfig) -> Preprocessing:
    bounds = clip_bounds(stats, plan, data)
    moments = measure(tagged, plan, data, clip=bounds) if bounds else None
    return fit_preprocessing(stats, plan, data, bounds=bounds, moments=moments)


def _check_counts(stats: DataStats, plan: ColumnPlan, data: DataConfig) -> None:
    rows = stats.counts["rows"]
    if stats.counts["_bad"] and data.bad_values == "reject":
        raise DataError(f"data.source: {stats.values['a_bad_value']}, not a number ({stats.counts['_bad']} "
                        "rows have such values); set data.bad_values: drop to skip them")
    if stats.counts["_missing"] and data.missing == "reject":
        columns = [c for c in plan.features if stats.counts[f"missing:{c}"]]
        raise DataError(f"data.missing is reject and {stats.counts['_missing']} of {rows} rows have a missing "
                        f"value (in {columns}); set data.missing to drop them or to a fill strategy")
    if stats.split_rows["train"] == 0:
        raise DataError(f"data.source: no training rows left out of {rows} read")
