"""Turns `data.source` into a Ray Dataset: a built-in table, or parquet/CSV/JSON-lines files."""

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.fs as pafs
import pyarrow.json as pa_json
import pyarrow.parquet as pa_parquet
import ray.data
from PIL import Image
from ray.data import FileShuffleConfig

from rayspeed.config.data import DataConfig, has_uri_scheme, infer_format
from rayspeed.datasets.builtin import load_builtin
from rayspeed.errors import DataError

# An empty CSV cell is a missing value for text columns too (pyarrow reads it as "" otherwise).
CSV_CONVERT = pa_csv.ConvertOptions(strings_can_be_null=True)
READERS = {
    "parquet": ray.data.read_parquet,
    "csv": lambda source, **options: ray.data.read_csv(source, convert_options=CSV_CONVERT, **options),
    "json": ray.data.read_json,
}
# The same formats read by pyarrow alone, one file at a time, to find the file a failed read choked on.
FILE_READERS = {
    "parquet": pa_parquet.read_table,
    "csv": lambda file: pa_csv.read_csv(file, convert_options=CSV_CONVERT),
    "json": pa_json.read_json,
    "images": lambda file: Image.open(file).load(),
    "text": lambda file: file.read(),  # undecodable text is found per file by the pipeline itself
}
BLOCK_ROWS = 10_000  # rows per block of a built-in set
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")  # Ray's read_images reads these


def read_source(data: DataConfig, *, seed: int) -> ray.data.Dataset:
    """Lazily reads the source; local paths and URIs (s3://, gs://, ...) go through pyarrow.fs. Each
    row keeps the file it came from (`columns.PATH_COLUMN`), and every pass over the files takes
    them in a new order, derived from `seed` (an epoch of files sorted by label is still mixed)."""
    if data.is_builtin:
        return from_frame(load_builtin(data.source))
    try:
        filesystem, path = source_filesystem(data.source)  # pyarrow reads a URI's options (endpoint_override=...)
        return READERS[resolve_format(data)](
            path, filesystem=filesystem, include_paths=True,
            shuffle=FileShuffleConfig(seed=seed, reseed_after_execution=True))
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as error:
        raise DataError(f"data.source: cannot read {data.source!r}: {error}") from error


def from_frame(frame: pd.DataFrame) -> ray.data.Dataset:
    """An in-memory table as a Ray Dataset of several blocks, so its map tasks run side by side (one
    block would put all of a built-in set's tagging, statistics and encoding in a single task)."""
    return ray.data.from_pandas([frame.iloc[start:start + BLOCK_ROWS] for start in range(0, len(frame), BLOCK_ROWS)])


def find_unreadable_file(data: DataConfig) -> DataError | None:
    """After Ray failed to read the source: the first file pyarrow cannot read either, as an error
    naming it (Ray's read errors do not say which file)."""
    if data.is_builtin:
        return None
    filesystem, path = source_filesystem(data.source)
    info = filesystem.get_file_info(path)
    kind = resolve_format(data)
    suffixes = {"images": IMAGE_SUFFIXES, "text": tuple(s.lower() for s in data.text.suffixes)}.get(kind) or ("",)
    files = [path] if info.type == pafs.FileType.File else sorted(
        entry.path for entry in filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
        if entry.type == pafs.FileType.File and entry.path.lower().endswith(suffixes))
    reader = FILE_READERS[kind]
    for file in files:
        try:
            with filesystem.open_input_file(file) as stream:
                reader(stream)
        except (OSError, pa.ArrowInvalid) as error:
            return DataError(f"data.source: cannot read {file}: {error}")
    return None


def resolve_format(data: DataConfig) -> str:
    """`data.format`, or the one format the file's suffix, or the directory's files, name.

    Raises:
        DataError: the source cannot be listed or its files have no single known format.
    """
    if data.format != "auto":
        return data.format
    try:
        filesystem, path = source_filesystem(data.source)
        info = filesystem.get_file_info(path)
        listing = [] if info.type == pafs.FileType.File else [
            entry.base_name for entry in filesystem.get_file_info(pafs.FileSelector(path))]
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"data.source: cannot read {data.source!r}: {error}") from error
    found = infer_format(data.source, listing=listing)
    if found is None:
        raise DataError(f"data.format: cannot infer the format of {data.source!r}; set it to parquet, csv or json")
    return found


def files_in_class_folders(filesystem: pafs.FileSystem, root: str, *, source: str, suffixes: tuple[str, ...],
                           what: str) -> list[str]:
    """The files (ending in one of `suffixes`; all when empty) of a folder of class folders, sorted.

    Raises:
        DataError: the folder cannot be listed, holds none, or holds one outside class folders.
    """
    try:
        entries = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, FileNotFoundError) as error:
        raise DataError(f"data.source: cannot read {source!r}: {error}") from error
    files = sorted(entry.path for entry in entries
                   if entry.type == pafs.FileType.File and entry.path.lower().endswith(suffixes or ("",)))
    if astray := [path for path in files if path[len(root):].strip("/").count("/") != 1]:
        raise DataError(f"data.source: {astray[0]} is not in a class folder (expected "
                        f"{source.rstrip('/')}/<class>/<file>; {len(astray)} {what} are elsewhere)")
    if not files:
        ending = f" ending in {', '.join(suffixes)}" if suffixes else ""
        raise DataError(f"data.source: no {what} in class folders under {source!r} (expected <class>/<file> "
                        f"files{ending})")
    return files


def source_filesystem(source: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(source) if has_uri_scheme(source) else (pafs.LocalFileSystem(), source)
