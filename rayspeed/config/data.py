"""The `data` section: where rows come from and how they are cleaned and split.

It only describes the data: validation never touches the file system (the config may be submitted
to a cluster where paths differ); reading it, and checking that it is there, is `rayspeed.datasets`' job.
"""

from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, model_validator

from rayspeed.config.section import Section

BUILTIN_DATASETS = ("digits",)
FORMAT_BY_SUFFIX = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}


def has_uri_scheme(source: str) -> bool:
    """True for `s3://bucket/x`, `gs://...`, `file:///...`; a plain path has no scheme."""
    return "://" in source


class SplitFractions(Section):
    """Fractions of the rows that go to each split; they must add up to 1."""

    train: float = Field(0.8, gt=0, lt=1)
    """Fraction of rows used for training."""
    val: float = Field(0.1, ge=0, lt=1)
    """Fraction of rows used for validation every epoch."""
    test: float = Field(0.1, ge=0, lt=1)
    """Fraction of rows held out and evaluated once at the end."""

    @model_validator(mode="after")
    def _adds_up_to_one(self):
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1 (got {total:g})")
        return self


class DataConfig(Section):
    """Where the rows come from, which columns matter, and how rows are cleaned and split."""

    source: str = "digits"
    """A built-in dataset name (digits), or a path or URI (s3://..., gs://...) of a file or directory;
    a relative path is relative to the directory rayspeed runs from."""
    format: Literal["auto", "parquet", "csv", "json"] = "auto"
    """File format; `auto` infers it from the suffix of the file, or of the files in the directory."""
    label_column: str = "label"
    """Column holding the class label (integers or strings)."""
    feature_columns: list[str] | None = None
    """Numeric columns fed to the model; default: every column except the label."""
    split: SplitFractions = SplitFractions()
    """Train/val/test fractions; the split is a deterministic function of each row and `train.seed`."""
    missing: Literal["drop", "reject"] = "drop"
    """Rows with a missing value are dropped (and counted) or make the run fail."""
    task: Literal["classification"] = "classification"
    """What is predicted: classes from `label_column` (regression and language modelling come next)."""

    @property
    def is_builtin(self) -> bool:
        return self.source in BUILTIN_DATASETS

    @property
    def is_local(self) -> bool:
        """A path on the machine that reads the data (checked there, in the verb's pre-flight)."""
        return not self.is_builtin and not has_uri_scheme(self.source)

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
