"""Turns `data.source` into a Ray Dataset: a built-in table, or parquet/CSV/JSON-lines files."""

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.fs as pafs
import ray.data

from rayspeed.config.data import DataConfig, has_uri_scheme, infer_format
from rayspeed.datasets.builtin import load_builtin
from rayspeed.errors import DataError

READERS = {
    "parquet": ray.data.read_parquet,
    # An empty CSV cell is a missing value for text columns too (pyarrow reads it as "" otherwise).
    "csv": lambda source: ray.data.read_csv(source, convert_options=pa_csv.ConvertOptions(strings_can_be_null=True)),
    "json": ray.data.read_json,
}


def read_source(data: DataConfig) -> ray.data.Dataset:
    """Lazily reads the source; local paths and URIs (s3://, gs://, ...) go through pyarrow.fs."""
    if data.is_builtin:
        return ray.data.from_pandas(load_builtin(data.source))
    try:
        return READERS[resolve_format(data)](data.source)
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as error:
        raise DataError(f"data.source: cannot read {data.source!r}: {error}") from error


def resolve_format(data: DataConfig) -> str:
    """`data.format`, or the one format the file's suffix, or the directory's files, name.

    Raises:
        DataError: the source cannot be listed or its files have no single known format.
    """
    if data.format != "auto":
        return data.format
    try:
        filesystem, path = pafs.FileSystem.from_uri(data.source) if has_uri_scheme(data.source) else (
            pafs.LocalFileSystem(), data.source)
        info = filesystem.get_file_info(path)
        listing = [] if info.type == pafs.FileType.File else [
            entry.base_name for entry in filesystem.get_file_info(pafs.FileSelector(path))]
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"data.source: cannot read {data.source!r}: {error}") from error
    found = infer_format(data.source, listing=listing)
    if found is None:
        raise DataError(f"data.format: cannot infer the format of {data.source!r}; set it to parquet, csv or json")
    return found


def feature_columns(schema: ray.data.Schema, data: DataConfig) -> list[str]:
    """The model's input columns, checked to exist and be numeric.

    Raises:
        DataError: naming the missing or non-numeric columns and the field that asked for them.
    """
    names = list(schema.names)
    wanted = [data.label_column, *(data.feature_columns or [])]
    absent = [c for c in wanted if c not in names]
    if absent:
        field = "data.label_column" if data.label_column in absent else "data.feature_columns"
        raise DataError(f"{field}: column(s) {absent} not in {data.source!r} (it has {names})")
    features = data.feature_columns or [c for c in names if c != data.label_column]
    types = dict(zip(names, schema.types, strict=True))
    non_numeric = [c for c in features if not _is_numeric(types[c])]
    if non_numeric:
        raise DataError(
            f"data.feature_columns: {non_numeric} are not numeric; list only numeric columns "
            "in data.feature_columns"
        )
    if not features:
        raise DataError(f"data.feature_columns: {data.source!r} has no column besides the label")
    return features


def _is_numeric(kind) -> bool:
    """Ray reports pyarrow types for Arrow blocks and numpy dtypes for pandas blocks."""
    if isinstance(kind, pa.DataType):
        return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    return np.issubdtype(np.dtype(kind), np.number) or np.issubdtype(np.dtype(kind), np.bool_)
