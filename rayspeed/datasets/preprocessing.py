"""The fitted preprocessing and the input spec: learned from the train split once, saved with the run
and in every checkpoint, so evaluation, export and prediction apply exactly the same transforms.

Plain data (JSON round trip), no Ray: the transform itself is `encoding.model_rows`.
"""

import math
from dataclasses import asdict, dataclass, field

UNKNOWN = "<unknown>"  # slot 0 of every categorical column: rare, unseen and (unfilled) missing values


@dataclass(frozen=True)
class NumericColumn:
    """A number column: missing values filled with `fill`, clipped to `clip`, then standardized."""

    name: str
    mean: float
    std: float
    fill: float | None = None
    clip: tuple[float, float] | None = None


@dataclass(frozen=True)
class CategoricalColumn:
    """A category column: missing values filled with `fill`, then one-hot over [unknown, *vocabulary]."""

    name: str
    vocabulary: list[str]
    fill: str | None = None

    @property
    def slots(self) -> list[str]:
        return [UNKNOWN, *self.vocabulary]


@dataclass(frozen=True)
class ImageTransform:
    """Pictures: resized to height x width, read with `channels` channels, pixels scaled to [0, 1],
    then each channel standardized by the train split's mean and deviation."""

    height: int
    width: int
    channels: int
    mean: list[float]
    std: list[float]

    @property
    def shape(self) -> list[int]:
        """[channels, height, width]: the layout models see (rows hold it flattened)."""
        return [self.channels, self.height, self.width]


@dataclass(frozen=True)
class TextTransform:
    """What turns text into model rows, saved with the run: the tokenizer (its whole JSON when it is
    a file's, so a checkpoint needs nothing else), the block length, the vocabulary size."""

    tokenizer: str  # `bytes`, or the file the JSON was read from (for people; the JSON is what counts)
    block_size: int
    vocab_size: int  # the tokenizer's tokens plus the end-of-document token (the last id)
    tokenizer_json: str | None = None
    strip_headers: bool = False  # each document's text after its first empty line only

    @property
    def pad_id(self) -> int:
        """Classified documents: the end-of-document token also fills each row after the document."""
        return self.end_of_document

    @property
    def end_of_document(self) -> int:
        return self.vocab_size - 1


@dataclass(frozen=True)
class WindowTransform:
    """Rows to windows: `length` consecutive rows of a series (`every` apart by `time_column`), labelled
    by the row `horizon` after the last; the time span (in steps of `every`) the splits were cut from,
    kept so a resumed run splits the same way even when rows were added."""

    time_column: str
    every: str
    series_column: str | None
    length: int
    horizon: int
    start: float
    end: float


@dataclass(frozen=True)
class Preprocessing:
    """What was fitted on the train split: each feature's transform (table columns, or pictures),
    the classes or the target's scale."""

    label_column: str
    task: str
    numeric: list[NumericColumn]
    categorical: list[CategoricalColumn] = field(default_factory=list)
    classes: list = field(default_factory=list)
    target_mean: float = 0.0  # regression: the model predicts the standardized target
    target_std: float = 1.0
    categorical_encoding: str = "one_hot"  # or `ids`: slot numbers in a `categories` column of their own
    image: ImageTransform | None = None  # pictures: no table columns
    text: TextTransform | None = None  # text: no table columns (classes when classified)
    window: WindowTransform | None = None  # table rows read as windows of consecutive rows

    @property
    def feature_names(self) -> list[str]:
        """One name per float table input: numbers first, then `column=value` for each one-hot slot
        (under `ids`, categorical columns are not among them); none for pictures (pixels)."""
        numbers = [c.name for c in self.numeric]
        if self.categorical_encoding == "ids":
            return numbers
        return numbers + [f"{c.name}={slot}" for c in self.categorical for slot in c.slots]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        numeric = [NumericColumn(**{**c, "clip": tuple(c["clip"]) if c.get("clip") else None})
                   for c in data["numeric"]]
        image, text, window = data.get("image"), data.get("text"), data.get("window")
        return cls(**{**data, "numeric": numeric, "image": ImageTransform(**image) if image else None,
                      "text": TextTransform(**text) if text else None,
                      "window": WindowTransform(**window) if window else None,
                      "categorical": [CategoricalColumn(**c) for c in data.get("categorical", [])]})


@dataclass(frozen=True)
class InputSpec:
    """What the model takes and gives: the task, feature names and shape, classes."""

    task: str
    features: list[str]  # table inputs' names; empty for pictures
    feature_shape: list[int]  # of one row's `features`, always flat
    feature_dtype: str
    classes: list
    target_std: float = 1.0  # regression: errors are reported in the target's units
    target_mean: float = 0.0  # ... and predictions too
    image_shape: list[int] | None = None  # pictures: [channels, height, width] of the flat features
    vocab_size: int | None = None  # text: token ids are below this
    category_sizes: list[int] = field(default_factory=list)  # `ids`: slots of each categorical column
    pad_id: int | None = None  # classified text: the token after each sequence's end
    sequence_shape: list[int] | None = None  # windows of rows: [rows, features per row] of the flat features

    @property
    def num_features(self) -> int:
        return math.prod(self.feature_shape)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, preprocessing: Preprocessing) -> "InputSpec":
        names = preprocessing.feature_names
        if (text := preprocessing.text) and preprocessing.task == "language_modeling":
            # a block of tokens: the model reads all but the last
            return cls(task=preprocessing.task, features=[], feature_shape=[text.block_size + 1], feature_dtype="int32",
                       classes=[], vocab_size=text.vocab_size)
        if text:  # a document's first tokens, padded
            return cls(task=preprocessing.task, features=[], feature_shape=[text.block_size], feature_dtype="int32",
                       classes=preprocessing.classes, vocab_size=text.vocab_size, pad_id=text.pad_id)
        image = preprocessing.image.shape if preprocessing.image else None
        sequence = [preprocessing.window.length, len(names)] if preprocessing.window else None
        return cls(task=preprocessing.task, features=names,
                   feature_shape=[math.prod(image or sequence or [len(names)])],
                   feature_dtype="float32", classes=preprocessing.classes, target_std=preprocessing.target_std,
                   target_mean=preprocessing.target_mean,
                   image_shape=image, sequence_shape=sequence,
                   category_sizes=[len(c.slots) for c in preprocessing.categorical]
                   if preprocessing.categorical_encoding == "ids" else [])
