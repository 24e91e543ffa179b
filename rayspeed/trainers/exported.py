"""An exported model (`rayspeed export`): the weights as one fp32 safetensors file, the model section
that builds the network, and the fitted preprocessing that turns raw rows into its inputs (beside
them, input_spec.json describes those inputs for people). Loading it needs torch and safetensors
only: no Ray, no DeepSpeed.

    from rayspeed.trainers.exported import load_exported
    from rayspeed.datasets.encoding import model_rows
    exported = load_exported("digits-model")
    inputs = model_rows(raw_rows_dataframe, preprocessing=exported.preprocessing)
    logits = exported.model(torch.from_numpy(inputs["features"]))
"""

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter
from safetensors.torch import load_model
from torch import nn

from rayspeed.config.model import ModelConfig
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.errors import RunStateError
from rayspeed.runs.layout import PREPROCESSING_FILE
from rayspeed.trainers.models import build_model

WEIGHTS_FILE = "model.safetensors"
MODEL_FILE = "model.json"  # the model section, and the run, checkpoint and step the weights came from
EXPORT_FILES = (WEIGHTS_FILE, MODEL_FILE, PREPROCESSING_FILE)


@dataclass(frozen=True)
class Exported:
    model: nn.Module  # in eval mode, on the CPU
    config: ModelConfig  # the `model` section that built it
    spec: InputSpec
    preprocessing: Preprocessing
    source: dict  # run, checkpoint and step the weights came from


def load_exported(directory: str | Path) -> Exported:
    """Builds the model and loads its weights.

    Raises:
        RunStateError: a file of the export is missing.
    """
    directory = Path(directory)
    missing = [name for name in EXPORT_FILES if not (directory / name).is_file()]
    if missing:
        raise RunStateError(f"{directory} is not a complete rayspeed export: {', '.join(missing)} missing")
    described = json.loads((directory / MODEL_FILE).read_text())
    fitted = json.loads((directory / PREPROCESSING_FILE).read_text())
    config = model_section(described["model"])
    model = exported_model(config, fitted)
    load_model(model, directory / WEIGHTS_FILE, strict=True)
    preprocessing = Preprocessing.from_dict(fitted)
    return Exported(model=model.eval(), config=config, spec=InputSpec.of(preprocessing), preprocessing=preprocessing,
                    source=described["source"])


def model_section(saved: dict) -> ModelConfig:
    """The `model` section as saved (in model.json, or a run's config.yaml)."""
    return TypeAdapter(ModelConfig).validate_python(saved)


def exported_model(model: ModelConfig, preprocessing: dict) -> nn.Module:
    """The network of the `model` section for the inputs the fitted preprocessing gives."""
    return build_model(model, InputSpec.of(Preprocessing.from_dict(preprocessing)))
