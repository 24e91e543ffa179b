"""Models: built-in `mlp` and `cnn`, or any user factory returning an `nn.Module`."""

import importlib
import math

from torch import nn

from rayspeed.config.model import ModelConfig
from rayspeed.errors import ConfigError


def build_model(model: ModelConfig, *, num_features: int, num_classes: int) -> nn.Module:
    """Instantiates the configured model for inputs of `num_features` and `num_classes` outputs."""
    if model.factory:
        module_name, function_name = model.factory.split(":")
        factory = getattr(importlib.import_module(module_name), function_name)
        built = factory(num_features=num_features, num_classes=num_classes, **model.args)
        if not isinstance(built, nn.Module):
            raise ConfigError(f"model.factory: {model.factory} returned {type(built).__name__}, not nn.Module")
        return built
    builder = {"mlp": mlp, "cnn": cnn}[model.name]
    try:
        return builder(num_features=num_features, num_classes=num_classes, **model.args)
    except TypeError as error:
        raise ConfigError(f"model.args: {error}") from None


def mlp(*, num_features: int, num_classes: int, hidden_sizes: list[int] = (128, 64),
        dropout: float = 0.0) -> nn.Module:
    """Fully connected ReLU network for tabular rows."""
    layers: list[nn.Module] = []
    width = num_features
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn(*, num_features: int, num_classes: int, image_shape: list[int] | None = None,
        channels: list[int] = (16, 32)) -> nn.Module:
    """Small conv net for images stored as flat rows of pixels (e.g. digits' 64 = 1x8x8)."""
    shape = tuple(image_shape or _square_image(num_features))
    if math.prod(shape) != num_features:
        raise ConfigError(f"model.args.image_shape: {list(shape)} does not hold {num_features} features")
    layers: list[nn.Module] = [nn.Unflatten(1, shape)]
    width = shape[0]
    for out in channels:
        layers += [nn.Conv2d(width, out, kernel_size=3, padding=1), nn.ReLU()]
        width = out
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(width * 4, num_classes)]
    return nn.Sequential(*layers)


def _square_image(num_features: int) -> tuple[int, int, int]:
    side = math.isqrt(num_features)
    if side * side != num_features:
        raise ConfigError(f"model.args.image_shape: {num_features} features are not a square image; set it")
    return (1, side, side)
