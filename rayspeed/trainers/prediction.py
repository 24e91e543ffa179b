"""`rayspeed predict`: an exported model over raw rows or pictures with Ray Data, one prediction per
input row in input order, streamed into one parquet or CSV file."""

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import ray.data

from rayspeed.datasets.prediction_input import PATH, read_for_prediction
from rayspeed.errors import ConfigError, RunStateError
from rayspeed.trainers.exported import load_exported
from rayspeed.trainers.inference import prediction_columns, predictions

WRITERS = {".parquet": pq.ParquetWriter, ".csv": pa_csv.CSVWriter}


def predict_to_file(export_dir: str, source: str, out: Path, *, actors: int, use_gpu: bool) -> int:
    """Writes `out` (a new .parquet or .csv file) and returns its rows. Needs a connected Ray.

    Raises:
        ConfigError: `out` exists or has another suffix.
        RunStateError: the export lacks a file.
        DataError: the input cannot be read or lacks a feature column.
    """
    if out.suffix not in WRITERS:
        raise ConfigError(f"--out {out}: expected a .parquet or .csv file")
    if out.exists():
        raise RunStateError(f"--out {out} exists: predict never overwrites files")
    exported = load_exported(export_dir)
    preprocessing = exported.preprocessing
    rows = read_for_prediction(source, preprocessing)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    predicted = predictions(rows, exported.model, model_config=exported.config.model_dump(mode="json"),
                            preprocessing=preprocessing.to_dict(), actors=actors, use_gpu=use_gpu,
                            keep=(PATH,) if preprocessing.image else ())
    partial = out.with_name(f".{out.name}.partial")
    written, writer = 0, None
    try:
        for batch in predicted.iter_batches(batch_size=None, batch_format="numpy"):
            table = pa.table(({PATH: batch[PATH]} if PATH in batch else {})
                             | prediction_columns(batch, preprocessing))
            writer = writer or WRITERS[out.suffix](partial, table.schema)
            writer.write_table(table)
            written += table.num_rows
        if writer is None:  # no rows: an empty file with the columns a row would have had
            writer = WRITERS[out.suffix](partial, _empty_schema(preprocessing))
        writer.close()
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return written


def _empty_schema(preprocessing) -> pa.Schema:
    classes = len(preprocessing.classes)
    sample = {"prediction": np.zeros(0, dtype=np.int64), "probabilities": np.zeros((0, classes), dtype=np.float32)}
    return pa.table(prediction_columns(sample, preprocessing)).schema
