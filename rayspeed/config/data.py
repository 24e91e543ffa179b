"""The `data` section: where rows come from and how they are cleaned and split.

It only describes the data; reading it is `rayspeed.datasets`' job.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

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
    """A built-in dataset name (digits), or a local path or URI (s3://..., gs://...) of a file or directory."""
    format: Literal["auto", "parquet", "csv", "json"] = "auto"
    """File format; `auto` infers it from the file suffix (.parquet, .csv, .json, .jsonl)."""
    label_column: str = "label"
    """Column holding the class label (integers or strings)."""
    feature_columns: list[str] | None = None
    """Numeric columns fed to the model; default: every column except the label."""
    split: SplitFractions = SplitFractions()
    """Train/val/test fractions; the split is a deterministic function of each row and `train.seed`."""
    missing: Literal["drop", "reject"] = "drop"
    """Rows with a missing value are dropped (and counted) or make the run fail."""

    @property
    def is_builtin(self) -> bool:
        return self.source in BUILTIN_DATASETS

    @field_validator("source")
    @classmethod
    def _source_exists(cls, source: str) -> str:
        """Local paths are checked here, so a typo fails before Ray starts; URIs are checked at run time."""
        if source in BUILTIN_DATASETS or has_uri_scheme(source):
            return source
        path = Path(source).expanduser()
        if not path.exists():
            raise ValueError(
                f"no such file or directory: {source!r} (expected a path, a URI, "
                f"or a built-in dataset: {', '.join(BUILTIN_DATASETS)})"
            )
        return str(path.resolve())

    @model_validator(mode="after")
    def _format_known(self):
        if self.is_builtin or self.format != "auto":
            return self
        if infer_format(self.source) is None:
            raise ValueError(
                f"cannot infer the format of {self.source!r}: set data.format to parquet, csv or json"
            )
        return self

    def resolved_format(self) -> str:
        """The concrete file format (parquet, csv or json) of a non-built-in source."""
        return self.format if self.format != "auto" else infer_format(self.source) or ""


def infer_format(source: str) -> str | None:
    """Format from the suffix of a file, or of the files in a local directory."""
    path = Path(source)
    if path.suffix:
        return FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if not has_uri_scheme(source) and path.is_dir():
        found = {FORMAT_BY_SUFFIX.get(p.suffix.lower()) for p in path.iterdir() if p.is_file()}
        found.discard(None)
        if len(found) == 1:
            return found.pop()
    return None
