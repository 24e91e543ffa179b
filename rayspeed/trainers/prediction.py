"""`rayspeed predict`: an exported model over raw rows or pictures with Ray Data, one prediction per
input row in input order, streamed into one parquet or CSV file."""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from rayspeed.datasets.prediction_input import PATH, USABLE, read_for_prediction
from rayspeed.datasets.preprocessing import Preprocessing
from rayspeed.errors import ConfigError, RunStateError
from rayspeed.trainers.exported import load_exported
from rayspeed.trainers.inference import class_names, prediction_columns, predictions

WRITERS = {".parquet": pq.ParquetWriter, ".csv": pa_csv.CSVWriter}


@dataclass(frozen=True)
class Predicted:
    rows: int
    unusable: int  # rows with a missing or unparsable feature value: no prediction (nulls)


def predict_to_file(export_dir: str, source: str, out: Path, *, actors: int, use_gpu: bool) -> Predicted:
    """Writes `out` (a new .parquet or .csv file). Needs a connected Ray.

    Raises:
        ConfigError: `out` exists, has another suffix, or its folder does not exist.
        RunStateError: the export lacks a file.
        DataError: the input cannot be read or lacks a feature column.
    """
    if out.suffix not in WRITERS:
        raise ConfigError(f"--out {out}: expected a .parquet or .csv file")
    if out.exists():
        raise RunStateError(f"--out {out} exists: predict never overwrites files")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: no such directory {out.parent}")
    exported = load_exported(export_dir)
    preprocessing = exported.preprocessing
    rows = read_for_prediction(source, preprocessing)
    kept = (PATH,) if preprocessing.image else (USABLE,)
    predicted = predictions(rows, exported.model, model_config=exported.config.model_dump(mode="json"),
                            preprocessing=preprocessing.to_dict(), actors=actors, use_gpu=use_gpu, keep=kept)
    predicted.context.execution_options.preserve_order = True  # the dataset's own context: it copied the global one
    partial = out.with_name(f".{out.name}.partial")
    counted, schema = Predicted(rows=0, unusable=0), _schema(preprocessing)
    try:
        with WRITERS[out.suffix](partial, schema) as writer:
            for batch in predicted.iter_batches(batch_size=None, batch_format="numpy"):
                table, unusable = _table(batch, preprocessing, schema)
                writer.write_table(table)
                counted = Predicted(rows=counted.rows + table.num_rows, unusable=counted.unusable + unusable)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return counted


def _table(batch: dict[str, np.ndarray], preprocessing: Preprocessing, schema: pa.Schema) -> tuple[pa.Table, int]:
    """The batch's predictions as output rows; a row with missing feature values gets nulls."""
    columns = {PATH: batch[PATH]} if PATH in batch else {}
    unusable = ~batch[USABLE] if USABLE in batch else np.zeros(len(next(iter(batch.values()))), dtype=bool)
    for name, values in prediction_columns(batch, preprocessing).items():
        columns[name] = pa.array(values, mask=unusable, type=schema.field(name).type)
    return pa.table(columns, schema=schema), int(unusable.sum())


def _schema(preprocessing: Preprocessing) -> pa.Schema:
    fields = [pa.field(PATH, pa.string())] if preprocessing.image else []
    if preprocessing.task == "classification":
        fields += [pa.field("prediction", pa.string())]
        fields += [pa.field(f"probability:{name}", pa.float32()) for name in class_names(preprocessing)]
    else:
        fields += [pa.field("prediction", pa.float64())]
    return pa.schema(fields)
