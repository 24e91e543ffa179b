"""The only place that reads experiment YAML: file + dotted overrides -> validated ExperimentConfig.

Errors come back as one line per problem, naming the file (or override), the field path and what
was expected. String overrides (`train.lr=3e-4`, the CLI) and value overrides (`{"train.lr": 3e-4}`,
a Tune trial) go through the same setter and the same validation.
"""

import difflib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.model import BUILTIN_MODELS, FactoryModel
from rayspeed.config.tune import probe_values
from rayspeed.errors import ConfigError

# Variants of tagged unions by the tag pydantic puts in error locations.
TAGGED_MODELS: dict[str, type[BaseModel]] = {
    **{f"[{name}]": model for name, model in BUILTIN_MODELS.items()}, "[factory]": FactoryModel}


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Reads `path`, applies `section.key=value` overrides, and validates the result.

    Raises:
        ConfigError: one line per problem, each naming the file (or override) and the field.
    """
    raw = read_yaml(path)
    for override in overrides:
        key, value = parse_override(override)
        set_dotted(raw, key, value, origin=f"override {override!r}")
    return check_search_space(validate(raw, source=str(path)), source=str(path))


def apply_overrides(cfg: ExperimentConfig, values: Mapping[str, Any], *, source: str = "override") -> ExperimentConfig:
    """A new validated config with dotted keys set to values: `{"train.lr": 0.01}` (what Tune trials use).

    Raises:
        ConfigError: exactly as for string overrides, one line per problem.
    """
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    for key, value in values.items():
        set_dotted(raw, key, value, origin=f"{source} {key!r}")
    return validate(raw, source=source)


def check_search_space(cfg: ExperimentConfig, *, source: str) -> ExperimentConfig:
    """Every `tune.space` dimension, its values set at its path, must give a valid experiment: an
    unknown path or a value of the wrong type is found here, not in a trial on the cluster."""
    problems = []
    for path, spec in (cfg.tune.space if cfg.tune else {}).items():
        for value in probe_values(spec):
            try:
                apply_overrides(cfg, {path: value}, source=f"{source}: tune.space.{path} = {value!r} gives")
            except ConfigError as error:
                problems += error.problems
                break
    if problems:
        raise ConfigError(problems)
    return cfg


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, train, ...) at the top")
    return raw


def parse_override(override: str) -> tuple[str, Any]:
    """`a.b.c=value` -> (`a.b.c`, value parsed as YAML: `3e-4`, `[64, 32]`, `null`)."""
    key, sep, text = override.partition("=")
    if not sep or not _is_dotted_key(key):
        raise ConfigError(f"override {override!r}: expected section.key=value, e.g. train.lr=3e-4")
    try:
        return key, yaml.safe_load(text)
    except yaml.YAMLError:
        return key, text


def set_dotted(raw: dict, key: str, value: Any, *, origin: str) -> None:
    if not _is_dotted_key(key):
        raise ConfigError(f"{origin}: expected a dotted key such as train.lr")
    *parents, leaf = key.split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(parents[: i + 1])} is not a section")
        node = child
    node[leaf] = value


def _is_dotted_key(key: Any) -> bool:
    return isinstance(key, str) and bool(key) and all(key.split("."))


def validate(raw: dict, *, source: str) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError([f"{source}: {line}" for e in error.errors() for line in describe(e)]) from None


def describe(error: dict) -> list[str]:
    """Human lines for one pydantic error: `train.lrr: unknown key; did you mean 'lr'?`."""
    loc = [part for part in error["loc"] if not _is_internal(part)]
    where = ".".join(str(part) for part in loc)
    if error["type"] == "extra_forbidden":
        return [f"{where}: unknown {'section' if len(loc) == 1 else 'key'}{_suggest(list(error['loc']))}"]
    if error["type"] == "missing":
        return [f"{where}: required but missing"]
    if error["type"] == "union_tag_invalid":
        return [_bad_variant(where, error)]
    message = error["msg"].removeprefix("Value error, ")
    parts = message.split(" | ")
    if not loc or all(part.startswith(f"{where}.") for part in parts):  # messages that name their own fields
        return parts
    shown = error.get("input")
    quiet = isinstance(shown, dict) or shown is None or repr(shown) in message
    got = "" if quiet else f" (got {shown!r})"
    return [f"{where}: {message}{got}"]


def _bad_variant(where: str, error: dict) -> str:
    """`model.name: Input should be 'mlp', 'cnn' or 'transformer' (or set model.factory) (got 'resnet')`."""
    names = [tag.strip("'[]") for tag in error["ctx"]["expected_tags"].split(", ")]
    builtin = [f"'{name}'" for name in names if name != "factory"]
    choices = " or ".join([", ".join(builtin[:-1]), builtin[-1]] if len(builtin) > 1 else builtin)
    got = error["input"].get("name") if isinstance(error["input"], dict) else error["input"]
    return f"{where}.name: Input should be {choices} (or set {where}.factory) (got {got!r})"


def _is_internal(part: Any) -> bool:
    """Pydantic adds type names like `literal['mlp','cnn']` and union tags like `[mlp]` to locations."""
    return isinstance(part, str) and ("[" in part or part in {"function-after", "int", "float", "str", "none"})


def _suggest(loc: list) -> str:
    names = _field_names(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of: {', '.join(names)}" if names else ""


def _field_names(parents: list) -> list[str]:
    model: type[BaseModel] | None = ExperimentConfig
    for part in parents:
        if isinstance(part, str) and part in TAGGED_MODELS:
            model = TAGGED_MODELS[part]
            continue
        annotation = model.model_fields[part].annotation if model and part in model.model_fields else None
        model = _model_in(annotation)
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
