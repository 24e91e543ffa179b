"""The fitted preprocessing and the input spec: learned from the train split once, saved with the run
and in every checkpoint, so evaluation, export and prediction apply exactly the same transforms.

Plain data (JSON round trip), no Ray: the transform itself is `encoding.model_rows`.
"""

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
class Preprocessing:
    """What was fitted on the train split: each feature's transform, the classes or the target's scale."""

    label_column: str
    task: str
    numeric: list[NumericColumn]
    categorical: list[CategoricalColumn] = field(default_factory=list)
    classes: list = field(default_factory=list)
    target_mean: float = 0.0  # regression: the model predicts the standardized target
    target_std: float = 1.0

    @property
    def feature_names(self) -> list[str]:
        """One name per model input: numbers first, then `column=value` for each one-hot slot."""
        return [c.name for c in self.numeric] + [f"{c.name}={slot}" for c in self.categorical for slot in c.slots]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        numeric = [NumericColumn(**{**c, "clip": tuple(c["clip"]) if c.get("clip") else None})
                   for c in data["numeric"]]
        return cls(**{**data, "numeric": numeric,
                      "categorical": [CategoricalColumn(**c) for c in data.get("categorical", [])]})


@dataclass(frozen=True)
class InputSpec:
    """What the model takes and gives: the task, feature names and shape, classes."""

    task: str
    features: list[str]
    feature_shape: list[int]
    feature_dtype: str
    classes: list
    target_std: float = 1.0  # regression: errors are reported in the target's units

    @property
    def num_features(self) -> int:
        return len(self.features)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, preprocessing: Preprocessing) -> "InputSpec":
        names = preprocessing.feature_names
        return cls(task=preprocessing.task, features=names, feature_shape=[len(names)], feature_dtype="float32",
                   classes=preprocessing.classes, target_std=preprocessing.target_std)
