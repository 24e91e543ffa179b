"""What every pipeline (tables, pictures, text) hands the trainer: the model-ready splits and what was
learned and counted, plus the steps they share: encoding each split, and naming the unreadable file."""

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import ray
import ray.data
from ray.data import RandomSeedConfig

from rayspeed.config.data import DataConfig
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.datasets.readers import find_unreadable_file
from rayspeed.datasets.rows import SPLIT_FLAGS
from rayspeed.errors import DataError

AUTO_CACHE_SHARE = 0.2
ROW_EXTRA_BYTES = 64  # the label, the row hash, categorical ids, Arrow's offsets


@dataclass(frozen=True)
class PreparedData:
    """The three splits as model-ready Ray Datasets (features, label, row_hash) and what was learned."""

    datasets: dict[str, ray.data.Dataset]
    preprocessing: Preprocessing
    input_spec: InputSpec
    rows_read: int
    dropped: dict[str, int]  # rows not used, by reason (bad values, no label, missing values, duplicates)
    missing_values: dict[str, int]  # missing values per feature column (filled, or their rows dropped)
    split_rows: dict[str, int]
    baselines: dict[str, float] = field(default_factory=dict)  # what a model must beat (`val_perplexity_unigram`)

    def describe(self) -> str:
        splits = ", ".join(f"{name} {rows}" for name, rows in self.split_rows.items())
        dropped = ", ".join(f"{rows} for {why}" for why, rows in self.dropped.items() if rows) or "none"
        missing = ", ".join(f"{column} {n}" for column, n in self.missing_values.items() if n)
        spec = self.input_spec
        modelling = spec.task == "language_modeling"
        what = f"{spec.vocab_size} tokens" if modelling else (
            "regression" if spec.task == "regression" else f"{spec.num_classes} classes")
        if spec.image_shape:
            inputs = "x".join(map(str, spec.image_shape)) + " pictures"
        elif spec.sequence_shape:
            inputs = "windows of {} rows x {} inputs".format(*spec.sequence_shape)
        elif spec.vocab_size:
            inputs = f"blocks of {spec.num_features - 1}" if modelling else f"first {spec.num_features} tokens"
        else:
            inputs = f"{spec.num_features} inputs"
        rows = "blocks cut" if modelling else ("documents read" if spec.vocab_size else "rows read")
        return (f"data: {self.rows_read} {rows}, dropped: {dropped}"
                + (f"; missing values: {missing}" if missing else "")
                + f"; {splits}; {inputs}, {what}")

    def report(self) -> dict:
        """The counts, for the run directory and W&B."""
        return {"rows_read": self.rows_read, "rows_dropped": self.dropped, "missing_values": self.missing_values,
                "split_rows": self.split_rows, "baselines": self.baselines}


def encode_splits(tagged: ray.data.Dataset, encode: Callable, *, preprocessing: Preprocessing, data: DataConfig,
                  seed: int, batch_format: str, train_rows: int, train_only: tuple[Callable, dict] | None = None
                  ) -> dict[str, ray.data.Dataset]:
    """Each split's rows through `encode(batch, preprocessing=...)`, then the train split's through
    `train_only` (augmentation) when given. val and test are read whole by every rank at every
    evaluation: unless `cache: none` they are kept in the object store after their first pass
    instead of re-running the pipeline. The train split is kept too under `cache: all`, and under
    `cache: auto` when its `train_rows` fit in a small share of the object store; it is kept before
    `train_only`, so augmentation still draws anew every epoch; `shuffle: full` shuffles it anew every
    epoch."""
    splits = {name: tagged.filter(expr=f"{flag} == 1").map_batches(
        encode, batch_format=batch_format, fn_kwargs={"preprocessing": preprocessing})
        for name, flag in SPLIT_FLAGS.items()}
    if data.cache != "none":
        splits["val"], splits["test"] = splits["val"].materialize(), splits["test"].materialize()
    if data.cache == "all" or (data.cache == "auto" and _fits_the_store(train_rows, preprocessing)):
        # A new block order every epoch, as the file order is when streaming.
        splits["train"] = splits["train"].materialize().randomize_block_order(
            seed=RandomSeedConfig(seed=seed, reseed_after_execution=True))
    if data.shuffle == "full":
        splits["train"] = splits["train"].random_shuffle(seed=RandomSeedConfig(seed=seed, reseed_after_execution=True))
    if train_only:
        function, kwargs = train_only
        splits["train"] = splits["train"].map_batches(function, batch_format="numpy", fn_kwargs=kwargs)
    return splits


def _fits_the_store(rows: int, preprocessing: Preprocessing) -> bool:
    """Whether `rows` model-ready rows take at most AUTO_CACHE_SHARE of the object store still free
    (concurrent sweep trials each keep their own copy). Streamed, every epoch reads and encodes the
    source again, and its first batch waits for a new Ray Data execution (a tenth of a second or
    more: much of a short epoch)."""
    spec = InputSpec.of(preprocessing)
    row_bytes = math.prod(spec.feature_shape) * np.dtype(spec.feature_dtype).itemsize + ROW_EXTRA_BYTES
    return rows * row_bytes <= AUTO_CACHE_SHARE * ray.available_resources().get("object_store_memory", 0)


@contextlib.contextmanager
def named_data_errors(data: DataConfig):
    """A failure to read names the file that cannot be read, when there is one."""
    try:
        yield
    except DataError:
        raise
    except Exception:
        if unreadable := find_unreadable_file(data):
            raise unreadable from None
        raise
