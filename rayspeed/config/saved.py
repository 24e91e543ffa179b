"""A run's saved config (`config.yaml`: resolved, secrets removed) read back as an experiment, for the
verbs that work on a finished run (`evaluate`, `export`)."""

import json

import yaml
from pydantic import TypeAdapter

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.load import validate
from rayspeed.config.model import ModelConfig
from rayspeed.config.redact import REDACTED
from rayspeed.config.tracking import TrackingConfig
from rayspeed.errors import ConfigError

# Sections a run's results never depend on, whose redacted values (Secret names) would not validate.
NOT_READ_BACK = ("k8s",)
# Values that may hold redacted credentials harmlessly: the run's directory is given by the caller.
UNUSED_WHEN_READ_BACK = ("run.",)


def read_saved_config(text: str, *, source: str) -> ExperimentConfig:
    """The experiment a run was started with.

    Raises:
        ConfigError: a value it needs was saved as `<redacted>` (its key looks like a secret's), or the
            file is not the config of this rayspeed.
    """
    raw = _sections(text, source=source)
    for section in NOT_READ_BACK:
        raw.pop(section, None)
    _refuse_redacted(raw, source=source, ignored=UNUSED_WHEN_READ_BACK)
    return validate(raw, source=source)


def read_saved_model(text: str, *, source: str) -> tuple[ModelConfig, int]:
    """Only the `model` section and `train.zero_stage`: what `export` needs, so that runs saved by an
    older rayspeed (which redacted more values) still export.

    Raises:
        ConfigError: as `read_saved_config`, for these two values.
    """
    raw = _sections(text, source=source)
    _refuse_redacted({"model": raw.get("model")}, source=source, ignored=())
    try:
        return TypeAdapter(ModelConfig).validate_python(raw["model"]), int(raw["train"]["zero_stage"])
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{source}: not the config of this rayspeed: {error}") from None


def read_saved_tracking(text: str, *, source: str) -> TrackingConfig:
    """Only the `tracking` section: where `export` logs the model it wrote.

    Raises:
        ConfigError: the section is not this rayspeed's.
    """
    try:
        return TrackingConfig.model_validate(_sections(text, source=source).get("tracking") or {})
    except ValueError as error:
        raise ConfigError(f"{source}: tracking: not the config of this rayspeed: {error}") from None


def _sections(text: str, *, source: str) -> dict:
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: not a rayspeed run's config")
    return raw


def _refuse_redacted(raw: dict, *, source: str, ignored: tuple[str, ...]) -> None:
    if hidden := sorted(path for path in _redacted_paths(raw) if not path.startswith(ignored)):
        raise ConfigError(f"{source}: {', '.join(hidden)} saved as {REDACTED} (the key looks like a secret's): "
                          "the run cannot be rebuilt from it")


def _redacted_paths(value, path: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _redacted_paths(item, f"{path}.{key}" if path else str(key))
    elif REDACTED in json.dumps(value):  # a whole value, a URI's credentials, an item of a list
        yield path
