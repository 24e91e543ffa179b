"""What every pipeline (tables, pictures, text) hands the trainer: the model-ready splits and what was
learned and counted, plus the steps they share: encoding each split, and naming the unreadable file."""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import ray.data
from ray.data import RandomSeedConfig

from rayspeed.config.data import DataConfig
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.datasets.readers import find_unreadable_file
from rayspeed.datasets.rows import SPLIT_FLAGS
from rayspeed.errors import DataError


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
                  seed: int, batch_format: str, train_only: tuple[Callable, dict] | None = None
                  ) -> dict[str, ray.data.Dataset]:
    """Each split's rows through `encode(batch, preprocessing=...)`, then the train split's through
    `train_only` (augmentation) when given. val and test are read whole by every rank at every
    evaluation: under `cache: eval` (and `all`) they are kept in the object store after their first
    pass instead of re-running the pipeline. `cache: all` keeps the train split before `train_only`,
    so augmentation still draws anew every epoch; `shuffle: full` shuffles it anew every epoch."""
    splits = {name: tagged.filter(expr=f"{flag} == 1").map_batches(
        encode, batch_format=batch_format, fn_kwargs={"preprocessing": preprocessing})
        for name, flag in SPLIT_FLAGS.items()}
    if data.cache in ("eval", "all"):
        splits["val"], splits["test"] = splits["val"].materialize(), splits["test"].materialize()
    if data.cache == "all":  # a new block order every epoch, as the file order is when streaming
        splits["train"] = splits["train"].materialize().randomize_block_order(
            seed=RandomSeedConfig(seed=seed, reseed_after_execution=True))
    if data.shuffle == "full":
        splits["train"] = splits["train"].random_shuffle(seed=RandomSeedConfig(seed=seed, reseed_after_execution=True))
    if train_only:
        function, kwargs = train_only
        splits["train"] = splits["train"].map_batches(function, batch_format="numpy", fn_kwargs=kwargs)
    return splits


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
