"""`model.init_from` and `model.freeze`: a run that starts from another run's export. Every tensor whose
name and shape match is copied; the others (a new head for another number of classes, an input layer
for other features) keep their fresh initialization. Frozen parameters are left out of the optimizer."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from rayspeed.config.model import ModelConfig
from rayspeed.datasets.preprocessing import InputSpec
from rayspeed.errors import ConfigError
from rayspeed.runs.layout import PREPROCESSING_FILE
from rayspeed.trainers.exported import EXPORT_FILES, WEIGHTS_FILE
from rayspeed.trainers.models import build_model


@dataclass(frozen=True)
class Adoption:
    loaded: list[str]  # the model's tensors copied from the export (tied ones under each name)
    fresh: list[str]  # the model's tensors the export has no tensor of that name and shape for
    frozen: list[str]  # the parameters `model.freeze` names

    def describe(self, source: str) -> str:
        fresh = f"; starting fresh (no tensor of that shape): {', '.join(self.fresh)}" if self.fresh else ""
        frozen = f"; frozen: {', '.join(self.frozen)}" if self.frozen else ""
        return f"init_from {source}: {len(self.loaded)} tensors loaded{fresh}{frozen}"


@dataclass(frozen=True)
class InitialWeights:
    """An export's weights, read in the driver once (workers get them from the object store)."""

    tensors: dict[str, torch.Tensor]
    classes: list  # the classes its head was trained for (text, as the data named them)


def read_initial_weights(model: ModelConfig) -> InitialWeights:
    """Raises:
        ConfigError: no such directory, or it lacks a file of an export.
    """
    directory = Path(model.init_from)
    if not directory.is_dir():
        raise ConfigError(f"model.init_from: no such directory: {directory} (expected what `rayspeed export` wrote)")
    if missing := [name for name in EXPORT_FILES if not (directory / name).is_file()]:
        raise ConfigError(f"model.init_from: {directory} is not a complete rayspeed export: "
                          f"{', '.join(missing)} missing")
    classes = json.loads((directory / PREPROCESSING_FILE).read_text()).get("classes", [])
    return InitialWeights(tensors=load_file(directory / WEIGHTS_FILE), classes=[str(c) for c in classes])


def adopt(module: nn.Module, weights: dict[str, torch.Tensor] | None, *, freeze: list[str]) -> Adoption:
    """Copies the matching tensors into `module` (a meta-device module only plans) and freezes. Without
    `weights` (a run that restores its own checkpoint) it only freezes.

    Raises:
        ConfigError: nothing matched (another architecture), or a `freeze` prefix names no parameter.
    """
    if weights is None:
        return _frozen(module, freeze, fresh=[], loaded=[])
    loaded, fresh = [], []
    for names, tensor in _tensors(module):
        source = next((name for name in names if name in weights and weights[name].shape == tensor.shape), None)
        if source is None:
            fresh += names
            continue
        loaded += names
        if not tensor.is_meta:
            with torch.no_grad():
                tensor.copy_(weights[source])
    if not loaded:
        raise ConfigError("model.init_from: none of its tensors fits this model (another architecture or size); "
                          f"it has {', '.join(list(weights)[:6])}")
    return _frozen(module, freeze, fresh=fresh, loaded=loaded)


def _frozen(module: nn.Module, freeze: list[str], *, fresh: list[str], loaded: list[str]) -> Adoption:
    frozen = []
    parameters = dict(module.named_parameters(remove_duplicate=False))
    for prefix in freeze:
        named = [name for name in parameters if name.startswith(prefix)]
        if not named:
            raise ConfigError(f"model.freeze: {prefix!r} names no parameter; the model has "
                              f"{', '.join(list(parameters)[:8])}{', ...' if len(parameters) > 8 else ''}")
        if stale := [name for name in named if name in fresh]:
            raise ConfigError(f"model.freeze: {prefix!r} names {', '.join(stale)}, which init_from does not provide")
        frozen += named
    for name in frozen:
        parameters[name].requires_grad_(False)
    return Adoption(loaded=loaded, fresh=fresh, frozen=sorted(set(frozen)))


def planned_adoption(model: ModelConfig, spec: InputSpec, weights: InitialWeights) -> str:
    """What `adopt` will do on the workers, found in the driver on the meta device, said in a line.

    Raises:
        ConfigError: as `adopt`.
    """
    with torch.device("meta"):
        said = adopt(build_model(model, spec), weights.tensors, freeze=model.freeze).describe(model.init_from)
    classes = [str(c) for c in spec.classes]
    if weights.classes and classes != weights.classes and len(classes) == len(weights.classes):
        said += (f". Its head was trained for classes {weights.classes[:10]}, this data has {classes[:10]}: "
                 "the head's outputs are taken in this data's order")
    return said


def _tensors(module: nn.Module) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Each parameter and buffer once, with all its names (a tied embedding and head share one)."""
    names: dict[int, list[str]] = {}
    tensors: dict[int, torch.Tensor] = {}
    for name, tensor in [*module.named_parameters(remove_duplicate=False),
                         *module.named_buffers(remove_duplicate=False)]:
        names.setdefault(id(tensor), []).append(name)
        tensors[id(tensor)] = tensor
    for key, tensor in tensors.items():
        yield names[key], tensor
