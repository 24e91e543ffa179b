"""The `model` section: a built-in architecture with typed arguments, or a user factory.

Each built-in model's arguments are a pydantic model, so a wrong argument is a validation error and
the JSON Schema documents them. Building the network is `rayspeed.trainers.models`' job.
"""

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, PositiveInt, Tag, field_validator, model_validator

from rayspeed.config.section import Section

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class MlpArgs(Section):
    """Fully connected ReLU network for tabular rows."""

    hidden_sizes: list[PositiveInt] = [128, 64]
    """Width of each hidden layer, input side first."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout probability after each hidden layer."""


class CnnArgs(Section):
    """Conv net for pictures: blocks of 3x3 conv, batch norm, ReLU and 2x2 max pooling (while the
    picture is at least 4 pixels on each side), then average pooling to at most 4x4 and a linear head."""

    image_shape: list[PositiveInt] | None = Field(None, min_length=3, max_length=3)
    """[channels, height, width] of one row; default: the pictures' own shape, or for table rows of
    pixels (digits' 64 = 1x8x8) a square one-channel picture from the feature count."""
    channels: list[PositiveInt] = [16, 32]
    """Output channels of each conv block."""
    batch_norm: bool = True
    """Batch normalization after each conv."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout probability before the linear head."""


class RnnArgs(Section):
    """A recurrent network over sequences: token ids from `data.format: text` (embedded first), or
    windows of table rows (`data.windows`); its last state goes through dropout to a linear head."""

    cell: Literal["lstm", "gru"] = "lstm"
    """The recurrent cell."""
    hidden_size: PositiveInt = 64
    """Width of the state in each direction."""
    layers: PositiveInt = 1
    """Stacked recurrent layers."""
    bidirectional: bool = False
    """Also read each sequence backwards, joining both directions' last states."""
    embedding_dim: PositiveInt = 64
    """Width of the token embedding (text only)."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout between stacked layers and before the head."""


class TransformerArgs(Section):
    """A Transformer (GPT-style: pre-norm blocks of self-attention and a GELU MLP, learned positions).
    For language modelling, a causal decoder whose output layer is tied to the token embedding; for
    classifying text, an encoder over the tokens (padding masked) whose mean goes to a linear head.
    The vocabulary and context length come from the data (`data.text`)."""

    layers: PositiveInt = 4
    """Transformer blocks."""
    heads: PositiveInt = 4
    """Attention heads per block; must divide `dim`."""
    dim: PositiveInt = 128
    """Width of the token representations."""
    mlp_ratio: PositiveInt = 4
    """Width of each block's MLP, as a multiple of `dim`."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on embeddings, attention weights and each block's outputs."""

    @model_validator(mode="after")
    def _heads_divide_dim(self):
        if self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
        return self


class ModelSection(Section):
    """What every model can start from: another run's exported weights, some of them frozen."""

    init_from: str | None = None
    """A directory `rayspeed export` wrote: training starts from its weights. Layers whose shape differs
    (a head for another number of classes, an input layer for other features) start fresh."""
    freeze: list[str] = []
    """Parameter names (prefixes, e.g. `layers.0.`) that keep the weights of `init_from` and are not trained."""

    @model_validator(mode="after")
    def _freeze_what_was_loaded(self):
        if self.freeze and not self.init_from:
            raise ValueError("model.freeze: only with model.init_from (frozen fresh weights would never learn)")
        return self


class MlpModel(ModelSection):
    """The `mlp` model."""

    name: Literal["mlp"] = "mlp"
    """Built-in model name."""
    args: MlpArgs = MlpArgs()
    """Arguments of `mlp`."""


class CnnModel(ModelSection):
    """The `cnn` model."""

    name: Literal["cnn"]
    """Built-in model name."""
    args: CnnArgs = CnnArgs()
    """Arguments of `cnn`."""


class RnnModel(ModelSection):
    """The `rnn` model."""

    name: Literal["rnn"]
    """Built-in model name."""
    args: RnnArgs = RnnArgs()
    """Arguments of `rnn`."""


class TransformerModel(ModelSection):
    """The `transformer` model."""

    name: Literal["transformer"]
    """Built-in model name."""
    args: TransformerArgs = TransformerArgs()
    """Arguments of `transformer`."""


class FactoryModel(ModelSection):
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


BUILTIN_MODELS = {"mlp": MlpModel, "cnn": CnnModel, "rnn": RnnModel, "transformer": TransformerModel}


def model_tag(data: Any) -> str:
    """Which variant a `model` mapping is; tags are bracketed so error paths can drop them."""
    if isinstance(data, dict):
        if data.get("factory") is not None:
            return "[factory]"
        return f"[{data.get('name', 'mlp')}]"
    return "[factory]" if getattr(data, "factory", None) else f"[{data.name}]"


ModelConfig = Annotated[
    Annotated[MlpModel, Tag("[mlp]")] | Annotated[CnnModel, Tag("[cnn]")] | Annotated[RnnModel, Tag("[rnn]")]
    | Annotated[TransformerModel, Tag("[transformer]")] | Annotated[FactoryModel, Tag("[factory]")],
    Discriminator(model_tag),
]
"""Which network to train. The input size and class count come from the data, not from here."""
