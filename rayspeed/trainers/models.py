"""Models: the built-in registry (`mlp`, `cnn`, arguments typed in `config.model`) or a user factory.

`check_model_builds` builds the model once on the driver, on the meta device (no memory, no
compute), so a factory that raises or an input size that cannot fit is a config error before any
worker starts, not a failure after `run.max_failures` restarts.
"""

import importlib
import math
from collections.abc import Callable

import torch
from torch import nn

from rayspeed.config.model import CnnArgs, FactoryModel, MlpArgs, ModelConfig
from rayspeed.errors import ConfigError


def mlp(args: MlpArgs, *, num_features: int, num_outputs: int) -> nn.Module:
    layers: list[nn.Module] = []
    width = num_features
    for hidden in args.hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if args.dropout:
            layers.append(nn.Dropout(args.dropout))
        width = hidden
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


def cnn(args: CnnArgs, *, num_features: int, num_outputs: int) -> nn.Module:
    shape = tuple(args.image_shape or _square_image(num_features))
    if math.prod(shape) != num_features:
        raise ConfigError(f"model.args.image_shape: {list(shape)} does not hold the data's {num_features} features")
    layers: list[nn.Module] = [nn.Unflatten(1, shape)]
    width = shape[0]
    for out in args.channels:
        layers += [nn.Conv2d(width, out, kernel_size=3, padding=1), nn.ReLU()]
        width = out
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(width * 4, num_outputs)]
    return nn.Sequential(*layers)


BUILDERS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn}


def build_model(model: ModelConfig, *, num_features: int, num_outputs: int) -> nn.Module:
    """Instantiates the configured model for `num_features` inputs and `num_outputs` outputs."""
    if isinstance(model, FactoryModel):
        module_name, function_name = model.factory.split(":")
        factory = getattr(importlib.import_module(module_name), function_name)
        built = factory(num_features=num_features, num_classes=num_outputs, **model.args)
        if not isinstance(built, nn.Module):
            raise ConfigError(f"model.factory: {model.factory} returned {type(built).__name__}, not an nn.Module")
        return built
    return BUILDERS[model.name](model.args, num_features=num_features, num_outputs=num_outputs)


def check_model_builds(model: ModelConfig, *, num_features: int, num_outputs: int) -> None:
    """Builds the model on the meta device.

    Raises:
        ConfigError: naming the model field and what the builder raised.
    """
    field = "model.factory" if isinstance(model, FactoryModel) else "model.args"
    try:
        with torch.device("meta"):
            build_model(model, num_features=num_features, num_outputs=num_outputs)
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
