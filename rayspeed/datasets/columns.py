"""Which columns the model reads and how each is encoded, decided once from the source's schema."""

from dataclasses import dataclass

import pandas as pd

from rayspeed.config.data import DataConfig
from rayspeed.errors import DataError

# The file each row came from (Ray's `include_paths`), so bad values can name it.
PATH_COLUMN = "path"
# A text column is a number column with bad values when at least this share of its values are numbers.
NUMERIC_SHARE = 0.9
# Rows looked at to decide each column's kind.
SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class ColumnPlan:
    """The label, and the features in source order with the ones encoded as categories."""

    label: str
    features: list[str]
    categorical: frozenset[str]
    numeric_label: bool  # regression, or classes that are numbers
    carried: tuple[str, ...] = ()  # read and kept as they are, not fed: `data.windows`' time and series columns

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.features if c not in self.categorical]

    @property
    def categories(self) -> list[str]:
        return [c for c in self.features if c in self.categorical]

    @property
    def columns(self) -> list[str]:
        """Features then the label, once each (under windows the label can be a feature too)."""
        return list(dict.fromkeys([*self.features, self.label]))


def plan_columns(sample: pd.DataFrame, data: DataConfig, *, source: str) -> ColumnPlan:
    """Numbers are standardized, text one-hot encoded; anything else must be left out. Kinds come from
    the first rows' values, not only their types: a text column whose values are nearly all numbers
    is a number column with a few bad values (CSV readers type a whole file as text for one of them).

    Raises:
        DataError: naming the absent or unusable columns and the field that asked for them.
    """
    if sample.empty:
        raise DataError(f"data.source: {source!r} holds no rows")
    names = [n for n in sample.columns if n != PATH_COLUMN]
    windows = data.windows
    carried = tuple(c for c in (windows.time_column, windows.series_column) if c) if windows else ()
    wanted = {"data.label_column": [data.label_column], "data.feature_columns": data.feature_columns or [],
              "data.categorical_columns": data.categorical_columns, "data.windows": list(carried)}
    for field, columns in wanted.items():
        if PATH_COLUMN in columns:
            raise DataError(f"{field}: the column name {PATH_COLUMN!r} is taken by the file a row came from; "
                            "rename that column in the data")
        if absent := [c for c in columns if c not in names]:
            raise DataError(f"{field}: column(s) {absent} not in {source!r} (it has {names})")
    # Under windows the label's own past is a feature by default: its value is a later row's.
    features = data.feature_columns or [c for c in names if c not in carried and (windows or c != data.label_column)]
    if unused := [c for c in data.categorical_columns if c not in features]:
        raise DataError(f"data.categorical_columns: {unused} are not in data.feature_columns")
    if not features:
        raise DataError(f"data.feature_columns: {source!r} has no column besides the label")
    kinds = {c: _kind(sample[c]) for c in [*features, data.label_column]}
    if unusable := [f"{c} ({sample[c].dtype})" for c in features if kinds[c] is None]:
        raise DataError(f"data.feature_columns: {', '.join(unusable)} can be neither numbers nor categories; "
                        "list the columns to use in data.feature_columns")
    if data.task == "regression" and kinds[data.label_column] != "number":
        raise DataError(f"data.label_column: {data.label_column!r} is text; regression needs a numeric target")
    text = {c for c in features if kinds[c] == "text"}
    return ColumnPlan(label=data.label_column, features=features,
                      categorical=frozenset(text | set(data.categorical_columns)),
                      numeric_label=kinds[data.label_column] == "number", carried=carried)


def _kind(column: pd.Series) -> str | None:
    """'number', 'text' or None (lists, binary, dates: nothing rayspeed encodes)."""
    if isinstance(column.dtype, pd.CategoricalDtype):  # pandas categories written to parquet
        return "text"
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column) or column.isna().all():
        return "number"
    if not (pd.api.types.is_string_dtype(column) or pd.api.types.is_object_dtype(column)):
        return None
    present = column.dropna()
    if not present.map(lambda value: isinstance(value, (str, int, float, bool))).all():
        return None
    numbers = pd.to_numeric(present.astype(object), errors="coerce").notna().mean()  # arrow: NaN is not NA
    return "number" if numbers >= NUMERIC_SHARE else "text"
