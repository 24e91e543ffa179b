"""The `data` section: where rows come from, how they are cleaned, encoded and split.

It only describes the data: validation never touches the file system (the config may be submitted
to a cluster where paths differ); reading it, and checking that it is there, is `rayspeed.datasets`' job.
"""

from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from rayspeed.config.images import ImageConfig
from rayspeed.config.section import Section
from rayspeed.config.text import TextConfig
from rayspeed.config.windows import WindowConfig

# name -> modality
BUILTIN_DATASETS = {"digits": "table", "flights": "table", "weather": "table", "fashion_mnist": "images"}
FORMAT_BY_SUFFIX = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}
# Fields that describe table columns; pictures and text have none of them.
TABLE_FIELDS = ("feature_columns", "categorical_columns", "max_categories", "categorical_encoding", "missing",
                "fill_value", "bad_values", "deduplicate", "clip_quantiles", "windows")


def has_uri_scheme(source: str) -> bool:
    """True for `s3://bucket/x`, `gs://...`, `file:///...`; a plain path has no scheme."""
    return "://" in source


class SplitFractions(Section):
    """Fractions of the rows that go to each split (they must add up to 1), or k folds for
    cross-validation: `folds: 5, fold: 2` validates on the third fifth of the rows outside test."""

    train: float = Field(0.8, gt=0, lt=1)
    """Fraction of rows used for training (not set with `folds`)."""
    val: float = Field(0.1, ge=0, lt=1)
    """Fraction of rows used for validation every epoch (not set with `folds`)."""
    test: float = Field(0.1, ge=0, lt=1)
    """Fraction of rows held out and evaluated once at the end."""
    folds: int | None = Field(None, ge=2)
    """k-fold cross-validation: the rows outside test are cut into this many folds of equal share."""
    fold: int = Field(0, ge=0)
    """With `folds`: the fold validated on (0-based); the other folds are trained on."""

    @model_validator(mode="after")
    def _adds_up_to_one(self):
        if self.folds is None and self.fold:
            raise ValueError("fold needs folds (the number of folds)")
        if self.folds is not None:
            if given := sorted({"train", "val"} & self.model_fields_set):
                raise ValueError(f"{' and '.join(given)} cannot be set with folds (the folds decide them)")
            if self.fold >= self.folds:
                raise ValueError(f"fold must be below folds ({self.folds}); got {self.fold}")
            return self
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1 (got {total:g})")
        return self

    @property
    def shares(self) -> dict[str, float]:
        """The share of rows in each split; with `folds`, val is one fold of the rows outside test."""
        if self.folds is None:
            return {"train": self.train, "val": self.val, "test": self.test}
        val = (1.0 - self.test) / self.folds
        return {"train": 1.0 - self.test - val, "val": val, "test": self.test}


class DataConfig(Section):
    """Where the rows come from, which columns matter, and how rows are cleaned and split."""

    source: str = "digits"
    """A built-in dataset name (digits; flights and weather, after `pip install 'rayspeed[examples]'`;
    fashion_mnist, from Debian's dataset-fashion-mnist), or a path or URI (s3://..., gs://...) of a file or directory;
    a relative path is relative to the directory rayspeed runs from."""
    format: Literal["auto", "parquet", "csv", "json", "images", "text"] = "auto"
    """File format; `auto` infers it from the suffix of the file, or of the files in the directory.
    `images`: a directory with one subdirectory of pictures (PNG, JPEG, ...) per class. `text`: a
    plain-text file or a directory of them (UTF-8) for language modelling, or to classify, a directory
    with one subdirectory of documents per class."""
    label_column: str = "label"
    """Column holding the class label (integers or strings), or the numeric target of regression."""
    task: Literal["classification", "regression", "language_modeling"] = "classification"
    """What is predicted from `label_column`: one of its classes, or its value (regression); from text,
    its class folder (classification) or each next token (language_modeling)."""
    feature_columns: list[str] | None = None
    """Columns fed to the model; default: every column except the label. Numeric columns are
    standardized, text (and `categorical_columns`) one-hot encoded."""
    categorical_columns: list[str] = []
    """Numeric columns to encode as categories instead of numbers (codes, ids, months)."""
    max_categories: PositiveInt = 64
    """Values of a categorical column that get their own slot: the most frequent in the train split.
    Rarer and unseen values share the column's unknown slot."""
    categorical_encoding: Literal["one_hot", "ids"] = "one_hot"
    """How a categorical column reaches the model: one input per slot (`one_hot`), or the slot's
    number (`ids`), which the `mlp` model looks up in an embedding table learned per column."""
    split: SplitFractions = SplitFractions()
    """Train/val/test fractions; the split is a deterministic function of each row and `train.seed`."""
    missing: Literal["drop", "reject", "mean", "median", "mode", "constant"] = "drop"
    """A row with a missing feature is dropped (and counted), fails the run, or has the value filled
    with the train split's mean, median or most frequent value, or `fill_value`. Categorical columns:
    mean and median put a missing value in the unknown slot. A row without a label is always dropped."""
    fill_value: float | str | None = None
    """The value `missing: constant` fills in."""
    bad_values: Literal["reject", "drop"] = "reject"
    """A value that does not parse as its column's type (text in a numeric column) fails the run,
    naming the file and column, or its row is dropped and counted."""
    deduplicate: bool = False
    """Keep one of usable rows identical in every used column (two extra passes over the data)."""
    clip_quantiles: tuple[float, float] | None = None
    """Numeric features are clipped to these quantiles of the train split, e.g. [0.01, 0.99]."""
    cache: Literal["auto", "none", "eval", "all"] = "auto"
    """What is kept in Ray's object store after its first pass: nothing (every epoch reads the
    source again), the val and test splits (read by every rank at every evaluation), all splits, or
    (`auto`) val and test, and the train split too when it takes at most a fifth of the store."""
    shuffle: Literal["buffer", "full"] = "buffer"
    """How each epoch mixes the train split: `buffer` takes the files in a new seeded order and each
    worker draws its batches at random from a buffer of `shuffle_buffer_rows` rows; `full` also
    shuffles every train row across the whole split each epoch (an all-to-all pass through Ray's
    object store, for files each holding one class and larger than the buffer)."""
    shuffle_buffer_rows: PositiveInt = 4096
    """Rows each worker holds to draw its batches from at random (at least one global batch's share)."""
    image: ImageConfig = ImageConfig()
    """Pictures (`format: images`, fashion_mnist): size, channels and training-only augmentation."""
    text: TextConfig = TextConfig()
    """Text (`format: text`): the tokenizer and the block length."""
    windows: WindowConfig | None = None
    """Tables of time-ordered rows: train on windows of consecutive rows (split by time); null: row by row."""

    @property
    def is_builtin(self) -> bool:
        return self.source in BUILTIN_DATASETS

    @property
    def modality(self) -> str:
        """`table` (rows of columns), `images` or `text`."""
        return BUILTIN_DATASETS.get(self.source) or (self.format if self.format in ("images", "text") else "table")

    @model_validator(mode="after")
    def _fits_modality(self):
        modality = self.modality
        # Compared with the defaults, not with the keys given: a resolved config spells every default out.
        changed = {name for name, field in type(self).model_fields.items() if getattr(self, name) != field.default}
        if modality != "table" and (given := [name for name in TABLE_FIELDS if name in changed]):
            raise ValueError(f"{', '.join(given)}: table settings do not apply to {modality}")
        if modality == "images" and self.task != "classification":
            raise ValueError("pictures are classified: task must be classification")
        if self.task == "language_modeling" and modality != "text":
            raise ValueError("language_modeling reads text: set both task: language_modeling and format: text")
        if modality == "text" and self.task == "regression":
            raise ValueError("text is classified (one folder per class) or modelled (task: language_modeling)")
        if "image" in changed and modality != "images":
            raise ValueError("image is only for pictures (format: images, or fashion_mnist)")
        if "text" in changed and modality != "text":
            raise ValueError("text is only for format: text")
        if self.windows is not None:
            self._check_windows()
        return self

    def _check_windows(self) -> None:
        windows = self.windows
        if self.split.folds is not None:
            raise ValueError("windows: splits are by time; split.folds (random folds) would leak later values")
        if self.deduplicate:
            raise ValueError("windows: deduplicate would open gaps in the series; leave it false")
        if self.categorical_encoding == "ids":
            raise ValueError("windows: categorical_encoding ids is for the mlp's row-by-row tables; use one_hot")
        used = [windows.time_column, windows.series_column]
        if self.feature_columns and (clash := [c for c in used if c in self.feature_columns]):
            raise ValueError(f"windows: {clash[0]} orders or names the series; it cannot also be a feature")

    @property
    def is_local(self) -> bool:
        """A path on the machine that reads the data (checked there, in the verb's pre-flight)."""
        return not self.is_builtin and not has_uri_scheme(self.source)

    @model_validator(mode="after")
    def _cleaning_consistent(self):
        if self.missing == "constant" and self.fill_value is None:
            raise ValueError("missing is constant: set data.fill_value")
        if self.fill_value is not None and self.missing != "constant":
            raise ValueError(f"fill_value is only used with missing: constant (missing is {self.missing})")
        if self.clip_quantiles and not 0 <= self.clip_quantiles[0] < self.clip_quantiles[1] <= 1:
            raise ValueError(f"clip_quantiles must be [low, high] with 0 <= low < high <= 1; got "
                             f"{list(self.clip_quantiles)}")
        if self.label_column in self.categorical_columns or (
                self.label_column in (self.feature_columns or []) and self.windows is None):
            raise ValueError(f"the label column {self.label_column!r} cannot also be a feature (it can under "
                             "windows, whose label is a later row's)")
        return self

    @model_validator(mode="after")
    def _format_known(self):
        """A file suffix that names no format is an error now; a directory's files are looked at later."""
        suffix = PurePosixPath(self.source.split("?")[0]).suffix
        if not self.is_builtin and self.format == "auto" and suffix and infer_format(self.source) is None:
            raise ValueError(
                f"cannot infer the format of {self.source!r} from {suffix!r}: set data.format to parquet, csv or json"
            )
        return self


def infer_format(source: str, *, listing: list[str] = ()) -> str | None:
    """Format from the suffix of a file, or of the files `listing` names when `source` is a directory."""
    suffix = PurePosixPath(source.split("?")[0]).suffix.lower()
    if suffix:
        return FORMAT_BY_SUFFIX.get(suffix)
    found = {FORMAT_BY_SUFFIX.get(PurePosixPath(name).suffix.lower()) for name in listing}
    found.discard(None)
    return found.pop() if len(found) == 1 else None
