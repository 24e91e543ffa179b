"""What `rayspeed predict` reads, in its order: rows of a table (parquet, CSV or JSON-lines files) or a
folder of pictures, checked against the fitted preprocessing and encoded as training encoded them."""

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import ray.data

from rayspeed.config.data import infer_format
from rayspeed.datasets.encoding import model_rows
from rayspeed.datasets.images import MODES
from rayspeed.datasets.picture_transform import picture_rows
from rayspeed.datasets.preprocessing import Preprocessing
from rayspeed.datasets.readers import READERS, source_filesystem
from rayspeed.errors import DataError

PATH = "path"  # a picture's file, kept next to its prediction
USABLE = "usable"  # a table row without missing or unparsable feature values (the others get no prediction)


def read_for_prediction(source: str, preprocessing: Preprocessing) -> ray.data.Dataset:
    """Model-ready rows (`features`[, `categories`] and `path` for pictures, `usable` for table rows) of
    `source`, lazily, in file and row order.

    Raises:
        DataError: the source cannot be read, has no known format, lacks a feature column (naming it),
            or the model reads text or windows of rows (not predicted row by row from files).
    """
    if preprocessing.text or preprocessing.window:
        raise DataError("predict reads tables and pictures; this model reads "
                        + ("text" if preprocessing.text else "windows of consecutive rows"))
    try:
        filesystem, path = source_filesystem(source)
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"{source}: no such file or directory")
        if preprocessing.image:
            return _pictures(path, filesystem, preprocessing)
        listing = [] if info.type == pafs.FileType.File else [
            entry.base_name for entry in filesystem.get_file_info(pafs.FileSelector(path))]
        kind = infer_format(source, listing=listing)
        if kind not in READERS:
            raise DataError(f"{source}: cannot tell its format; predict reads parquet, CSV or JSON-lines files")
        rows = READERS[kind](path, filesystem=filesystem)
        _check_columns(rows.schema().names, preprocessing, source=source)
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"{source}: cannot read it: {error}") from error
    return rows.map_batches(_table_inputs, batch_format="pandas", fn_kwargs={"preprocessing": preprocessing})


def _check_columns(names: list[str], preprocessing: Preprocessing, *, source: str) -> None:
    wanted = [column.name for column in (*preprocessing.numeric, *preprocessing.categorical)]
    if missing := [name for name in wanted if name not in names]:
        shown = ", ".join(wanted[:8]) + (f", ... ({len(wanted)} in all)" if len(wanted) > 8 else "")
        raise DataError(f"{source}: no feature column {', '.join(map(repr, missing))}; the model reads {shown}")


def _table_inputs(batch, *, preprocessing: Preprocessing) -> dict:
    """The label column, when the rows have one, is not read (its values may be new or missing)."""
    encoded = model_rows(batch.drop(columns=[preprocessing.label_column], errors="ignore"),
                         preprocessing=preprocessing)
    inputs = {name: encoded[name] for name in ("features", "categories") if name in encoded}
    return inputs | {USABLE: np.isfinite(encoded["features"]).all(axis=1)}


def _pictures(path: str, filesystem: pafs.FileSystem, preprocessing: Preprocessing) -> ray.data.Dataset:
    """Every picture under `path` (subfolders included), decoded to the size and channels trained on."""
    transform = preprocessing.image
    pictures = ray.data.read_images(path, filesystem=filesystem, size=(transform.height, transform.width),
                                    mode=MODES[transform.channels], include_paths=True)
    return pictures.map_batches(_picture_inputs, batch_format="numpy", fn_kwargs={"preprocessing": preprocessing})


def _picture_inputs(batch: dict, *, preprocessing: Preprocessing) -> dict:
    return {"features": picture_rows(batch, preprocessing=preprocessing)["features"], PATH: batch[PATH]}
