"""Models: the built-in registry (`mlp`, `cnn`, `transformer`, arguments typed in `config.model`) or a user factory.

`check_model_builds` builds the model once on the driver, on the meta device (no memory, no
compute), so a factory that raises or an input size that cannot fit is a config error before any
worker starts, not a failure after `run.max_failures` restarts.
"""

import importlib
import math
from collections.abc import Callable

import torch
from torch import nn

from rayspeed.config.model import CnnArgs, FactoryModel, MlpArgs, ModelConfig, TransformerArgs
from rayspeed.errors import ConfigError
from rayspeed.trainers.transformer import DecoderLM


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


def mlp(args: MlpArgs, *, num_features: int, num_outputs: int, image_shape: list[int] | None = None,
        category_sizes: list[int] = ()) -> nn.Module:
    layers: list[nn.Module] = []
    width = num_features + sum(embedding_width(size) for size in category_sizes)
    for hidden in args.hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if args.dropout:
            layers.append(nn.Dropout(args.dropout))
        width = hidden
    layers.append(nn.Linear(width, num_outputs))
    body = nn.Sequential(*layers)
    return EmbeddingInputs(list(category_sizes), body) if category_sizes else body


def cnn(args: CnnArgs, *, num_features: int, num_outputs: int, image_shape: list[int] | None = None,
        category_sizes: list[int] = ()) -> nn.Module:
    shape = tuple(args.image_shape or image_shape or _square_image(num_features))
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


def transformer(args: TransformerArgs, *, num_features: int, num_outputs: int,
                image_shape: list[int] | None = None, category_sizes: list[int] = ()) -> nn.Module:
    """Rows are blocks of `num_features` tokens: the model reads all but the last; outputs are the vocabulary."""
    return DecoderLM(args, vocab_size=num_outputs, context=num_features - 1)


BUILDERS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn, "transformer": transformer}


def build_model(model: ModelConfig, *, num_features: int, num_outputs: int, image_shape: list[int] | None = None,
                category_sizes: list[int] = ()) -> nn.Module:
    """Instantiates the configured model for `num_features` float inputs (pictures: flattened
    `image_shape`, [channels, height, width]; plus under `ids` one slot number per categorical column
    of `category_sizes` slots) and `num_outputs` outputs."""
    if isinstance(model, FactoryModel):
        module_name, function_name = model.factory.split(":")
        factory = getattr(importlib.import_module(module_name), function_name)
        built = factory(num_features=num_features, num_classes=num_outputs, **model.args)
        if not isinstance(built, nn.Module):
            raise ConfigError(f"model.factory: {model.factory} returned {type(built).__name__}, not an nn.Module")
        return built
    return BUILDERS[model.name](model.args, num_features=num_features, num_outputs=num_outputs,
                                image_shape=image_shape, category_sizes=category_sizes)


def check_model_builds(model: ModelConfig, *, num_features: int, num_outputs: int,
                       image_shape: list[int] | None = None, category_sizes: list[int] = ()) -> None:
    """Builds the model on the meta device.

    Raises:
        ConfigError: naming the model field and what the builder raised.
    """
    field = "model.factory" if isinstance(model, FactoryModel) else "model.args"
    try:
        with torch.device("meta"):
            build_model(model, num_features=num_features, num_outputs=num_outputs, image_shape=image_shape,
                        category_sizes=category_sizes)
    except ConfigError:
        raise
    except Exception as error:  # a user factory may raise anything
        what = model.factory if isinstance(model, FactoryModel) else f"model {model.name!r}"
        raise ConfigError(f"{field}: building {what} for {num_features} features and {num_outputs} outputs "
                          f"failed: {type(error).__name__}: {error}") from None


def _square_image(num_features: int) -> tuple[int, int, int]:
    side = math.isqrt(num_features)
    if side * side != num_features:
        raise ConfigError(f"model.args.image_shape: {num_features} features are not a square image; set it")
    return (1, side, side)
