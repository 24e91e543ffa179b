"""The Ray Data pipeline: read -> tag (missing, split) -> clean -> standardize with train stats -> splits.

It runs in the driver; Ray Train then streams the train split to the workers in shards.
"""

from dataclasses import dataclass

import numpy as np
import ray.data
from ray.data.aggregate import Count, Mean, Std, Sum, Unique
from ray.data.context import ShuffleStrategy

from rayspeed.config.data import DataConfig
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.datasets.readers import feature_columns, read_source
from rayspeed.datasets.rows import SPLIT_CODES, SPLIT_FLAGS, model_rows, tag_rows
from rayspeed.errors import DataError


@dataclass(frozen=True)
class PreparedData:
    """The three splits as model-ready Ray Datasets (features, label, row_hash) and what was learned."""

    datasets: dict[str, ray.data.Dataset]
    preprocessing: Preprocessing
    input_spec: InputSpec
    rows_read: int
    rows_dropped: int
    split_rows: dict[str, int]

    def describe(self) -> str:
        splits = ", ".join(f"{name} {rows}" for name, rows in self.split_rows.items())
        return (f"data: {self.rows_read} rows read, {self.rows_dropped} dropped for missing values; "
                f"{splits}; {self.input_spec.num_features} features, {self.input_spec.num_classes} classes")


def build_datasets(data: DataConfig, *, seed: int, fitted: Preprocessing | None = None) -> PreparedData:
    """Builds the splits. Tagged rows are materialized once; Ray Data aggregations over them give the
    split sizes and classes (one pass) and the train split's means and deviations (one pass).

    Args:
        data: the `data` section.
        seed: the split seed (`train.seed`).
        fitted: the preprocessing a resumed run was trained with; reused instead of refitted.

    Raises:
        DataError: unreadable source, bad columns, rejected missing values, or an empty split.
    """
    source = read_source(data)
    features = feature_columns(source.schema(), data)
    label = data.label_column
    columns = [*features, label]
    fractions = (data.split.train, data.split.val)
    tagged = source.map_batches(
        tag_rows, batch_format="pandas", fn_kwargs={"columns": columns, "fractions": fractions, "seed": seed}
    ).materialize()
    rows_read = tagged.count()
    # Whole-dataset aggregations run as plain tasks: the default hash shuffle would first start a pool
    # of aggregator actors (about 6 s on 2 cores) for what is a single group.
    tagged.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    clean = tagged.filter(expr="_missing == 0")
    counts = clean.aggregate(Count(alias_name="rows"), Unique(label, ignore_nulls=True, alias_name="classes"),
                             *(Sum(flag, alias_name=name) for name, flag in SPLIT_FLAGS.items()))
    split_rows = {name: int(counts[name] or 0) for name in SPLIT_CODES}
    dropped = rows_read - int(counts["rows"] or 0)
    if dropped and data.missing == "reject":
        raise DataError(
            f"data.missing is reject and {dropped} of {rows_read} rows have a missing value in {columns}; "
            "set data.missing: drop to train without them"
        )
    if split_rows["train"] == 0:
        raise DataError(f"data.source: no training rows left out of {rows_read} read")
    preprocessing = fitted or _fit(clean, features=features, label=label, classes=counts["classes"] or [])
    if len(preprocessing.classes) < 2:
        raise DataError(f"data.label_column: {label!r} has {len(preprocessing.classes)} class; need 2 or more")
    shaped = {
        name: clean.filter(expr=f"{flag} == 1").map_batches(model_rows, batch_format="pandas",
                                                            fn_kwargs=preprocessing.transform_kwargs())
        for name, flag in SPLIT_FLAGS.items()
    }
    # val and test are read whole by every rank at every evaluation: keep them in the object store
    # instead of re-running their pipeline each time. train stays a stream, sharded by Ray Train.
    shaped["val"], shaped["test"] = shaped["val"].materialize(), shaped["test"].materialize()
    return PreparedData(datasets=shaped, preprocessing=preprocessing,
                        input_spec=InputSpec.of(preprocessing, task=data.task), rows_read=rows_read,
                        rows_dropped=dropped, split_rows=split_rows)


def _fit(clean: ray.data.Dataset, *, features: list[str], label: str, classes: list) -> Preprocessing:
    """Train-split moments (population std; a constant column keeps std 1 so it stays at 0)."""
    train = clean.filter(expr=f"{SPLIT_FLAGS['train']} == 1")
    moments = train.aggregate(*(Mean(f, alias_name=f"mean:{f}") for f in features),
                              *(Std(f, ddof=0, alias_name=f"std:{f}") for f in features))
    stds = np.asarray([moments[f"std:{f}"] or 0.0 for f in features], dtype=np.float64)
    return Preprocessing(features=features, label_column=label,
                         means=[float(moments[f"mean:{f}"]) for f in features],
                         stds=np.where(stds > 0, stds, 1.0).tolist(),
                         classes=sorted(_plain(c) for c in classes))


def _plain(value):
    """numpy scalars -> Python values, so classes serialize to JSON and YAML."""
    return value.item() if hasattr(value, "item") else value
