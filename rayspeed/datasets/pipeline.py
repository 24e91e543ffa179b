"""The Ray Data pipeline: read -> tag (missing, split) -> clean -> standardize with train stats -> splits.

It runs in the driver; Ray Train then streams the train split to the workers in shards.
"""

from dataclasses import dataclass

import ray.data

from rayspeed.config.data import DataConfig
from rayspeed.datasets.readers import feature_columns, read_source
from rayspeed.datasets.rows import SPLIT_CODES, block_stats, combine_stats, model_rows, tag_rows
from rayspeed.errors import DataError


@dataclass(frozen=True)
class PreparedData:
    """The three splits as model-ready Ray Datasets (features, label, row_hash) and what was learned."""

    datasets: dict[str, ray.data.Dataset]
    features: list[str]
    classes: list
    rows_read: int
    rows_dropped: int
    split_rows: dict[str, int]

    @property
    def num_features(self) -> int:
        return len(self.features)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        splits = ", ".join(f"{name} {rows}" for name, rows in self.split_rows.items())
        return (f"data: {self.rows_read} rows read, {self.rows_dropped} dropped for missing values; "
                f"{splits}; {self.num_features} features, {self.num_classes} classes")


def build_datasets(data: DataConfig, *, seed: int) -> PreparedData:
    """Builds the splits. Tagged rows are materialized once, and one pass over them yields every
    statistic (missing rows, split sizes, classes, standardization) instead of one job each.

    Raises:
        DataError: unreadable source, bad columns, rejected missing values, or an empty split.
    """
    source = read_source(data)
    features = feature_columns(source.schema(), data)
    columns = [*features, data.label_column]
    fractions = (data.split.train, data.split.val)
    tagged = source.map_batches(
        tag_rows, batch_format="pandas", fn_kwargs={"columns": columns, "fractions": fractions, "seed": seed}
    ).materialize()
    stats = combine_stats(tagged.map_batches(
        block_stats, batch_format="pandas", fn_kwargs={"features": features, "label": data.label_column}
    ).take_all())
    rows_read, dropped = tagged.count(), stats["missing"]
    if dropped and data.missing == "reject":
        raise DataError(
            f"data.missing is reject and {dropped} of {rows_read} rows have a missing value in {columns}; "
            "set data.missing: drop to train without them"
        )
    if stats["split_rows"]["train"] == 0:
        raise DataError(f"data.source: no training rows left out of {rows_read} read")
    classes = stats["labels"]
    if len(classes) < 2:
        raise DataError(f"data.label_column: {data.label_column!r} has {len(classes)} class; need 2 or more")
    clean = tagged.filter(expr="_missing == False") if dropped else tagged
    shape = {"features": features, "label": data.label_column, "means": stats["means"], "stds": stats["stds"],
             "class_index": {c: i for i, c in enumerate(classes)}}
    datasets = {
        name: clean.filter(expr=f"_split == {code}").map_batches(model_rows, batch_format="pandas",
                                                                fn_kwargs=shape)
        for name, code in SPLIT_CODES.items()
    }
    # val and test are read whole by every rank at every evaluation: keep them in the object store
    # instead of re-running their pipeline each time. train stays a stream, sharded by Ray Train.
    datasets["val"], datasets["test"] = datasets["val"].materialize(), datasets["test"].materialize()
    return PreparedData(datasets=datasets, features=features, classes=[_plain(c) for c in classes],
                        rows_read=rows_read, rows_dropped=dropped, split_rows=stats["split_rows"])


def _plain(value):
    """numpy scalars -> Python values, so classes serialize to JSON and YAML."""
    return value.item() if hasattr(value, "item") else value
