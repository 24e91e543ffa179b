"""One streaming pass of Ray Data aggregations over the tagged rows: row counts (read, per split, per
reason dropped, missing per column) and the train split's statistics that preprocessing is fitted on.

Train-only statistics need no separate filtered pass: `statistics_view` blanks every value outside
usable train rows, and the aggregations ignore blanks.
"""

import pickle
from dataclasses import dataclass

import numpy as np
import pandas as pd
import ray.data
from ray.data.aggregate import Count, Mean, Min, Std, Sum, ValueCounter

from rayspeed.config.data import DataConfig
from rayspeed.datasets.columns import ColumnPlan
from rayspeed.datasets.quantiles import HASH_COLUMN, HashSampleQuantiles
from rayspeed.datasets.rows import DROP_FLAGS, SPLIT_FLAGS
from rayspeed.datasets.values import category_of

COUNTED = (*DROP_FLAGS, *SPLIT_FLAGS.values())


@dataclass(frozen=True)
class DataStats:
    """What the pass measured: counts, and per column its train-split statistics by name."""

    counts: dict[str, int]  # rows read (`rows`), each COUNTED flag, missing values per feature (`missing:<col>`,
    # on labelled rows without bad values: the ones filled, or dropped for them)
    values: dict  # aggregation alias -> result (`mean:<col>`, `std:<col>`, `quantiles:<col>`, `counts:<col>`, ...)

    @property
    def split_rows(self) -> dict[str, int]:
        return {name: self.counts[flag] for name, flag in SPLIT_FLAGS.items()}

    def value_counts(self, column: str) -> list[tuple]:
        """(value, count) of the train split, most frequent first, ties by value; missing values left out."""
        found = self.values[f"counts:{column}"]
        pairs = [(v, n) for v, n in zip(found["values"], found["counts"], strict=True) if category_of(v) is not None]
        return sorted(pairs, key=lambda pair: (-pair[1], str(pair[0])))


def measure(tagged: ray.data.Dataset, plan: ColumnPlan, data: DataConfig,
            clip: dict[str, tuple[float, float]] | None = None) -> DataStats:
    """Runs the aggregations in one pass. With `clip`, train values are clipped first (the moments
    that standardize clipped features)."""
    quantiles = quantiles_wanted(data)
    aggregations = [Count(alias_name="rows"), *(Sum(flag, alias_name=flag) for flag in COUNTED),
                    Min("_bad_value", alias_name="a_bad_value")]
    for column in plan.features:
        aggregations.append(Sum(f"_missing:{column}", alias_name=f"missing:{column}"))
        train = f"_train:{column}"
        if column in plan.categorical or data.missing == "mode":
            aggregations.append(ValueCounter(train, alias_name=f"counts:{column}"))
        if column not in plan.categorical:
            aggregations += [Mean(train, alias_name=f"mean:{column}"), Std(train, ddof=0, alias_name=f"std:{column}")]
            if quantiles:
                aggregations.append(HashSampleQuantiles(train, quantiles, alias_name=f"quantiles:{column}"))
    label = f"_train:{plan.label}"
    if data.task == "regression":
        aggregations += [Mean(label, alias_name="mean:label"), Std(label, ddof=0, alias_name="std:label")]
    else:  # every split's classes, so a class seen only in val still has an index
        aggregations.append(ValueCounter("_label", alias_name="counts:_label"))
    view = tagged.map_batches(statistics_view, batch_format="pandas", fn_kwargs={"plan": plan, "clip": clip or {}})
    found = aggregate_streaming(view, aggregations)
    counts = {name: int(found[name] or 0) for name in ["rows", *COUNTED, *(f"missing:{c}" for c in plan.features)]}
    return DataStats(counts=counts, values=found)


def aggregate_streaming(dataset: ray.data.Dataset, aggregations: list) -> dict:
    """Ray Data's aggregations, run where the blocks are made: each map task reduces its block to the
    aggregations' accumulators, and the driver merges those as they stream in.

    `Dataset.aggregate` is an all-to-all step that first gathers every input block in the object
    store: over the statistics view (about twice the source) that spilled gigabytes to disk.
    """
    partials = dataset.map_batches(_block_accumulators, batch_format="pyarrow", batch_size=None,
                                   fn_kwargs={"aggregations": aggregations})
    merged = [agg.init(None) for agg in aggregations]
    for row in partials.iter_rows():
        merged = [agg.merge(total, part) for agg, total, part in
                  zip(aggregations, merged, pickle.loads(row["accumulators"]), strict=True)]
    return {agg.name: agg.finalize(total) for agg, total in zip(aggregations, merged, strict=True)}


def _block_accumulators(block, *, aggregations: list) -> dict:
    accumulators = [agg.accumulate_block(agg.init(None), block) for agg in aggregations]
    return {"accumulators": np.array([pickle.dumps(accumulators)], dtype=object)}


def quantiles_wanted(data: DataConfig) -> list[float]:
    """Train-split quantiles the config needs: the median to fill, the clipping bounds."""
    wanted = [0.5] if data.missing == "median" else []
    return sorted({*wanted, *(data.clip_quantiles or ())})


def statistics_view(batch: pd.DataFrame, *, plan: ColumnPlan, clip: dict) -> pd.DataFrame:
    """The counted flags, a missing flag per feature, and each column's values on usable train rows only."""
    train = (batch[SPLIT_FLAGS["train"]] == 1).to_numpy()
    counted = ((batch["_bad"] == 0) & (batch["_no_label"] == 0)).to_numpy()  # bad values are not missing ones
    view = {flag: batch[flag] for flag in [*COUNTED, "_bad_value", HASH_COLUMN]}
    for column in plan.features:
        values = batch[column]
        view[f"_missing:{column}"] = (values.isna().to_numpy() & counted).astype(np.int8)
        if column in clip:
            values = values.clip(*clip[column])
        view[f"_train:{column}"] = values.where(train)
    view[f"_train:{plan.label}"] = batch[plan.label].where(train)
    view["_label"] = batch[plan.label].where((batch["_usable"] == 1).to_numpy())
    return pd.DataFrame(view, index=batch.index)

