"""The `model` section: a built-in architecture with typed arguments, or a user factory.

Each built-in model's arguments are a pydantic model, so a wrong argument is a validation error and
the JSON Schema documents them. Building the network is `rayspeed.trainers.models`' job.
"""

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, PositiveInt, Tag, field_validator

from rayspeed.config.section import Section

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class MlpArgs(Section):
    """Fully connected ReLU network for tabular rows."""

    hidden_sizes: list[PositiveInt] = [128, 64]
    """Width of each hidden layer, input side first."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout probability after each hidden layer."""


class CnnArgs(Section):
    """Small conv net for images stored as flat rows of pixels (e.g. digits' 64 = 1x8x8)."""

    image_shape: list[PositiveInt] | None = Field(None, min_length=3, max_length=3)
    """[channels, height, width] of one row; default: a square 1xHxW image from the feature count."""
    channels: list[PositiveInt] = [16, 32]
    """Output channels of each 3x3 conv block."""


class MlpModel(Section):
    """The `mlp` model."""

    name: Literal["mlp"] = "mlp"
    """Built-in model name."""
    args: MlpArgs = MlpArgs()
    """Arguments of `mlp`."""


class CnnModel(Section):
    """The `cnn` model."""

    name: Literal["cnn"]
    """Built-in model name."""
    args: CnnArgs = CnnArgs()
    """Arguments of `cnn`."""


class FactoryModel(Section):
    """A user model: `package.module:function` returning an `nn.Module` of class logits."""

    name: None = None
    """Always null for a factory."""
    factory: str
    """`package.module:function`, called with `args` plus `num_features` and `num_classes` from the data.
    A module in the directory rayspeed runs from is importable on the driver and on every worker."""
    args: dict[str, Any] = {}
    """Keyword arguments for the factory; checked against its signature before Ray starts."""

    @field_validator("name", mode="before")
    @classmethod
    def _no_name(cls, name: Any) -> None:
        if name is not None:
            raise ValueError("must be null when model.factory is set")
        return name

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, factory: str) -> str:
        if not FACTORY_PATTERN.match(factory):
            raise ValueError("must look like 'package.module:function'")
        return factory


BUILTIN_MODELS = {"mlp": MlpModel, "cnn": CnnModel}


def model_tag(data: Any) -> str:
    """Which variant a `model` mapping is; tags are bracketed so error paths can drop them."""
    if isinstance(data, dict):
        if data.get("factory") is not None:
            return "[factory]"
        return f"[{data.get('name', 'mlp')}]"
    return "[factory]" if getattr(data, "factory", None) else f"[{data.name}]"


ModelConfig = Annotated[
    Annotated[MlpModel, Tag("[mlp]")] | Annotated[CnnModel, Tag("[cnn]")] | Annotated[FactoryModel, Tag("[factory]")],
    Discriminator(model_tag),
]
"""Which network to train. The input size and class count come from the data, not from here."""
