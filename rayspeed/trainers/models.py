"""Models: the built-in registry (`mlp`, `cnn`, `rnn`, `transformer`; arguments typed in `config.model`) or a
user factory.

`check_model_builds` builds the model once on the driver, on the meta device (no memory, no
compute), so a factory that raises or an input size that cannot fit is a config error before any
worker starts, not a failure after `run.max_failures` restarts.
"""

import importlib
import math
from collections.abc import Callable

import torch
from torch import nn

from rayspeed.config.model import CnnArgs, FactoryModel, MlpArgs, ModelConfig, RnnArgs, TransformerArgs
from rayspeed.datasets.preprocessing import InputSpec
from rayspeed.errors import ConfigError
from rayspeed.trainers.recurrent import RecurrentNet
from rayspeed.trainers.tasks import task_for
from rayspeed.trainers.transformer import DecoderLM, EncoderClassifier


class EmbeddingInputs(nn.Module):
    """Category slots looked up in one learned table per column, joined to the float features."""

    def __init__(self, category_sizes: list[int], body: nn.Module):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(size, embedding_width(size)) for size in category_sizes)
        self.body = body

    def forward(self, features: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        looked_up = [table(categories[:, i]).to(features.dtype) for i, table in enumerate(self.tables)]
        return self.body(torch.cat([features, *looked_up], dim=1))


def embedding_width(slots: int) -> int:
    """fastai's rule of thumb for an embedding's width from the number of values it holds."""
    return min(600, round(1.6 * slots**0.56))


def mlp(args: MlpArgs, spec: InputSpec, *, num_outputs: int) -> nn.Module:
    layers: list[nn.Module] = []
    width = spec.num_features + sum(embedding_width(size) for size in spec.category_sizes)
    for hidden in args.hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if args.dropout:
            layers.append(nn.Dropout(args.dropout))
        width = hidden
    layers.append(nn.Linear(width, num_outputs))
    body = nn.Sequential(*layers)
    return EmbeddingInputs(spec.category_sizes, body) if spec.category_sizes else body


def cnn(args: CnnArgs, spec: InputSpec, *, num_outputs: int) -> nn.Module:
    num_features = spec.num_features
    shape = tuple(args.image_shape or spec.image_shape or _square_image(num_features))
    if math.prod(shape) != num_features:
        raise ConfigError(f"model.args.image_shape: {list(shape)} does not hold the data's {num_features} features")
    layers: list[nn.Module] = [nn.Unflatten(1, shape)]
    width, side = shape[0], min(shape[1:])
    for out in args.channels:
        layers += [nn.Conv2d(width, out, kernel_size=3, padding=1, bias=not args.batch_norm)]
        layers += [nn.BatchNorm2d(out), nn.ReLU()] if args.batch_norm else [nn.ReLU()]
        if side >= 4:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        width = out
    pooled = min(side, 4)  # keep up to 4x4 places for the head (2x2 averages away too much detail)
    layers += [nn.AdaptiveAvgPool2d(pooled), nn.Flatten()]
    if args.dropout:
        layers.append(nn.Dropout(args.dropout))
    layers.append(nn.Linear(width * pooled * pooled, num_outputs))
    return nn.Sequential(*layers)


def rnn(args: RnnArgs, spec: InputSpec, *, num_outputs: int) -> nn.Module:
    if not (spec.vocab_size or spec.sequence_shape):
        raise ConfigError("model.name: rnn reads sequences: text (data.format: text) or windows of rows (data.windows)")
    return RecurrentNet(args, num_outputs=num_outputs, sequence_shape=spec.sequence_shape,
                        vocab_size=spec.vocab_size, pad_id=spec.pad_id)


def transformer(args: TransformerArgs, spec: InputSpec, *, num_outputs: int) -> nn.Module:
    """Language modelling: rows are blocks of tokens, the model reads all but the last; classification:
    rows are token sequences padded with `pad_id`."""
    if spec.task == "language_modeling":
        return DecoderLM(args, vocab_size=spec.vocab_size, context=spec.num_features - 1)
    return EncoderClassifier(args, vocab_size=spec.vocab_size, context=spec.num_features, num_classes=num_outputs,
                             pad_id=spec.pad_id)


BUILDERS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn, "rnn": rnn, "transformer": transformer}


def build_model(model: ModelConfig, spec: InputSpec) -> nn.Module:
    """Instantiates the configured model for the data `spec` describes: its inputs (table rows,
    pictures, token sequences or windows of rows) and the task's outputs."""
    num_outputs = task_for(spec).output_size(spec)
    if isinstance(model, FactoryModel):
        module_name, function_name = model.factory.split(":")
        factory = getattr(importlib.import_module(module_name), function_name)
        built = factory(num_features=spec.num_features, num_classes=num_outputs, **model.args)
        if not isinstance(built, nn.Module):
            raise ConfigError(f"model.factory: {model.factory} returned {type(built).__name__}, not an nn.Module")
        return built
    return BUILDERS[model.name](model.args, spec, num_outputs=num_outputs)


def check_model_builds(model: ModelConfig, spec: InputSpec) -> None:
    """Builds the model on the meta device.

    Raises:
        ConfigError: naming the model field and what the builder raised.
    """
    field = "model.factory" if isinstance(model, FactoryModel) else "model.args"
    outputs = task_for(spec).output_size(spec)
    try:
        with torch.device("meta"):
            build_model(model, spec)
    except ConfigError:
        raise
    except Exception as error:  # a user factory may raise anything
        what = model.factory if isinstance(model, FactoryModel) else f"model {model.name!r}"
        raise ConfigError(f"{field}: building {what} for {spec.num_features} features and {outputs} outputs "
                          f"failed: {type(error).__name__}: {error}") from None


def _square_image(num_features: int) -> tuple[int, int, int]:
    side = math.isqrt(num_features)
    if side * side != num_features:
        raise ConfigError(f"model.args.image_shape: {num_features} features are not a square image; set it")
    return (1, side, side)
