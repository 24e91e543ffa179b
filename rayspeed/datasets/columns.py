"""Which columns the model reads and how each is encoded, decided once from the source's schema."""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import ray.data

from rayspeed.config.data import DataConfig
from rayspeed.errors import DataError

# The file each row came from (Ray's `include_paths`), so bad values can name it.
PATH_COLUMN = "path"


@dataclass(frozen=True)
class ColumnPlan:
    """The label, and the features in source order with the ones encoded as categories."""

    label: str
    features: list[str]
    categorical: frozenset[str]
    numeric_label: bool  # regression, or classes that are numbers

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.features if c not in self.categorical]

    @property
    def categories(self) -> list[str]:
        return [c for c in self.features if c in self.categorical]

    @property
    def columns(self) -> list[str]:
        return [*self.features, self.label]


def plan_columns(schema: ray.data.Schema, data: DataConfig, *, source: str) -> ColumnPlan:
    """Numbers are standardized, text one-hot encoded; anything else must be left out.

    Raises:
        DataError: naming the absent or unusable columns and the field that asked for them.
    """
    names = [n for n in schema.names if n != PATH_COLUMN]
    types = dict(zip(schema.names, schema.types, strict=True))
    wanted = {"data.label_column": [data.label_column], "data.feature_columns": data.feature_columns or [],
              "data.categorical_columns": data.categorical_columns}
    for field, columns in wanted.items():
        if PATH_COLUMN in columns:
            raise DataError(f"{field}: the column name {PATH_COLUMN!r} is taken by the file a row came from; "
                            "rename that column in the data")
        if absent := [c for c in columns if c not in names]:
            raise DataError(f"{field}: column(s) {absent} not in {source!r} (it has {names})")
    features = data.feature_columns or [c for c in names if c != data.label_column]
    if not features:
        raise DataError(f"data.feature_columns: {source!r} has no column besides the label")
    if unusable := [f"{c} ({types[c]})" for c in features if _kind(types[c]) is None]:
        raise DataError(f"data.feature_columns: {', '.join(unusable)} can be neither numbers nor categories; "
                        "list the columns to use in data.feature_columns")
    label_kind = _kind(types[data.label_column])
    if data.task == "regression" and label_kind != "number":
        raise DataError(f"data.label_column: {data.label_column!r} is {types[data.label_column]}; "
                        "regression needs a numeric target")
    text = {c for c in features if _kind(types[c]) == "text"}
    return ColumnPlan(label=data.label_column, features=features,
                      categorical=frozenset(text | set(data.categorical_columns)),
                      numeric_label=label_kind == "number")


def _kind(kind) -> str | None:
    """'number', 'text' or None. Ray reports pyarrow types for Arrow blocks, numpy dtypes for pandas."""
    if isinstance(kind, pa.DataType):
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            return "number"
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
            return "text"
        return "number" if pa.types.is_null(kind) else None  # an all-empty column
    dtype = np.dtype(kind)
    if np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_):
        return "number"
    return "text" if dtype == np.dtype(object) else None
