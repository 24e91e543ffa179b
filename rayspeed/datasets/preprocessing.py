"""The fitted preprocessing and the input spec: learned from the train split once, saved with the run
and in every checkpoint, so evaluation, export and prediction apply exactly the same transforms.

Plain data (JSON round trip), no Ray: the transform itself is `rows.model_rows`.
"""

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """What was fitted: feature order, train-split means and standard deviations, the class index."""

    features: list[str]
    label_column: str
    means: list[float]
    stds: list[float]
    classes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(**data)

    def transform_kwargs(self) -> dict:
        """Arguments of `rows.model_rows` (numpy arrays, the class index)."""
        return {"features": self.features, "label": self.label_column, "means": np.asarray(self.means),
                "stds": np.asarray(self.stds), "class_index": {c: i for i, c in enumerate(self.classes)}}


@dataclass(frozen=True)
class InputSpec:
    """What the model takes and gives: the task, feature names and shape, classes."""

    task: str
    features: list[str]
    feature_shape: list[int]
    feature_dtype: str
    classes: list

    @property
    def num_features(self) -> int:
        return len(self.features)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, preprocessing: Preprocessing, *, task: str) -> "InputSpec":
        return cls(task=task, features=preprocessing.features, feature_shape=[len(preprocessing.features)],
                   feature_dtype="float32", classes=preprocessing.classes)
