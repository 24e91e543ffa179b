"""The `model` section: a built-in architecture or a user factory, and its arguments."""

import importlib.util
import re
from typing import Any, Literal

from pydantic import model_validator

from rayspeed.config.section import Section

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ModelConfig(Section):
    """Which network to train. The input size and class count come from the data, not from here."""

    name: Literal["mlp", "cnn"] | None = "mlp"
    """Built-in model: `mlp` for tabular rows, `cnn` for small images (rows of pixels)."""
    factory: str | None = None
    """`package.module:function` returning an `nn.Module`; replaces `name`. Called with `args`,
    plus `num_features` and `num_classes` from the data."""
    args: dict[str, Any] = {}
    """Keyword arguments for the model (mlp: hidden_sizes, dropout; cnn: image_shape, channels)."""

    @model_validator(mode="before")
    @classmethod
    def _factory_replaces_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("factory") and "name" not in data:
            data = {**data, "name": None}
        return data

    @model_validator(mode="after")
    def _one_source(self):
        if (self.name is None) == (self.factory is None):
            raise ValueError(
                "set exactly one of model.name and model.factory (for a factory, set model.name: null)"
            )
        if self.factory is not None:
            check_factory(self.factory)
        return self


def check_factory(factory: str) -> None:
    """Checks the form and that the module can be found, without importing it (that is slow)."""
    if not FACTORY_PATTERN.match(factory):
        raise ValueError(f"model.factory must look like 'package.module:function' (got {factory!r})")
    module = factory.split(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        found = None
    if found is None:
        raise ValueError(f"model.factory: module {module!r} cannot be found on the Python path")
