"""Checks of a valid config against the machine that runs the verb, before Ray starts: the local data
path exists, the model factory imports and accepts its arguments.

Not part of validation: a config may be submitted to a cluster where paths and modules differ, so
only the verb that reads them locally runs these.
"""

import importlib
import inspect
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rayspeed.config.data import has_uri_scheme
from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.load import apply_overrides
from rayspeed.config.model import FactoryModel
from rayspeed.config.tracking import TrackingConfig
from rayspeed.errors import ConfigError

WANDB_DEFAULT_URL = "https://api.wandb.ai"
WANDB_PROBE_S = 5.0


@dataclass(frozen=True)
class Preflight:
    """The config with local paths made absolute, and the directory to ship to the workers (the
    working directory, when the model factory's module lives there)."""

    cfg: ExperimentConfig
    code_dir: str | None
    code_excludes: list[str]
    """Paths inside `code_dir` not to upload: the data and the run storage, when they live there."""


def preflight(cfg: ExperimentConfig, *, working_dir: str) -> Preflight:
    """Runs the local checks; `working_dir` is where relative paths and factory modules are found.

    Raises:
        ConfigError: one line naming the field and what was expected.
    """
    cfg = _absolute_export_path(_absolute_data_path(cfg, working_dir), working_dir)
    code_dir = None
    if isinstance(cfg.model, FactoryModel):
        code_dir = _check_factory(cfg.model.factory, cfg.model.args, working_dir=working_dir)
    inside = [path_inside(path, code_dir) for path in (cfg.data.source, cfg.run.storage_path)] if code_dir else []
    return Preflight(cfg=cfg, code_dir=code_dir, code_excludes=[path for path in inside if path])


def wandb_mode(tracking: TrackingConfig, env: Mapping[str, str], *, say: Callable[[str], None]) -> str:
    """The W&B mode the run uses, decided before any Ray work. Online, the server must answer (any HTTP
    answer) within seconds: a dead one would otherwise end the run after start-up, in Ray Train's
    controller. `auto` that resolved to online records offline instead, and says so.

    Raises:
        ConfigError: `online` (or WANDB_MODE=online) and no server answers, naming its URL.
    """
    mode = tracking.mode_in(env)
    if mode != "online":
        return mode
    url = env.get("WANDB_BASE_URL") or WANDB_DEFAULT_URL
    problem = _unanswered(url)
    if problem is None:
        return mode
    where = "WANDB_BASE_URL" if env.get("WANDB_BASE_URL") else "W&B's default; set WANDB_BASE_URL for your server"
    if tracking.mode == "auto" and env.get("WANDB_MODE") != "online":
        say(f"the W&B server at {url} ({where}) does not answer ({problem}): tracking.mode auto records this run "
            "offline; upload it later with `wandb sync`")
        return "offline"
    raise ConfigError(f"tracking.mode: online, but the W&B server at {url} ({where}) does not answer: {problem}. "
                      "Set tracking.mode: offline (or WANDB_MODE=offline) to record the run locally and "
                      "`wandb sync` it later")


def training_wandb_mode(tracking: TrackingConfig, env: Mapping[str, str], *, say: Callable[[str], None]) -> str:
    """`wandb_mode` for a verb that trains, where checkpoint artifacts need W&B.

    Raises:
        ConfigError: as `wandb_mode`; or WANDB_MODE=disabled while the config asks for checkpoint artifacts.
    """
    mode = wandb_mode(tracking, env, say=say)
    if mode == "disabled" and tracking.log_checkpoints not in (None, "none"):
        raise ConfigError(f"tracking.log_checkpoints: {tracking.log_checkpoints} logs checkpoints to W&B, but "
                          "WANDB_MODE=disabled turns W&B off: unset it or set tracking.log_checkpoints: none")
    return mode


def _unanswered(url: str) -> str | None:
    """Why the server at `url` gave no HTTP answer within WANDB_PROBE_S, or None when it answered."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=WANDB_PROBE_S).close()
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as error:  # URLError is an OSError
        return str(getattr(error, "reason", error))
    return None


def path_inside(path: str, directory: str) -> str | None:
    """`path` as an upload exclude of `directory` ("/runs") when it lies inside it, else None."""
    absolute = os.path.abspath(os.path.expanduser(path))
    if has_uri_scheme(path) or os.path.commonpath([absolute, directory]) != directory or absolute == directory:
        return None
    return "/" + os.path.relpath(absolute, directory)


def importable_from(working_dir: str) -> None:
    """Makes modules in the working directory importable, as `python -m` does."""
    if working_dir not in sys.path:
        sys.path.insert(0, working_dir)


def _absolute_data_path(cfg: ExperimentConfig, working_dir: str) -> ExperimentConfig:
    if not cfg.data.is_local:
        return cfg
    path = Path(cfg.data.source).expanduser()
    path = path if path.is_absolute() else Path(working_dir) / path
    if not path.exists():
        raise ConfigError(
            f"data.source: no such file or directory: {cfg.data.source!r} (expected a path, a URI, or a "
            "built-in dataset: digits)"
        )
    resolved = str(path.resolve())
    return cfg if resolved == cfg.data.source else apply_overrides(cfg, {"data.source": resolved})


def _absolute_export_path(cfg: ExperimentConfig, working_dir: str) -> ExperimentConfig:
    """`model.init_from` as an absolute path. Its files are checked when a run with no checkpoint yet
    reads them: a resumed run restores its own weights, so the export may be gone by then."""
    if not cfg.model.init_from:
        return cfg
    resolved = str(Path(working_dir, Path(cfg.model.init_from).expanduser()).resolve())
    return cfg if resolved == cfg.model.init_from else apply_overrides(cfg, {"model.init_from": resolved})


def _check_factory(factory: str, args: dict, *, working_dir: str) -> str | None:
    """Imports the factory and binds its arguments as the workers will call it.

    Returns:
        `working_dir` when the module was found there (the workers need it shipped), else None.
    """
    module_name, function_name = factory.split(":")
    importable_from(working_dir)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module may raise anything while importing
        raise ConfigError(f"model.factory: cannot import {module_name!r} "
                          f"(from {working_dir} or the Python path): {type(error).__name__}: {error}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"model.factory: module {module_name!r} has no function {function_name!r}")
    try:
        inspect.signature(function).bind(num_features=1, num_classes=2, **args)
    except TypeError as error:
        raise ConfigError(f"model.args: {factory} does not accept them: {error}") from None
    origin = getattr(module, "__file__", None) or ""
    inside = origin and os.path.commonpath([os.path.abspath(origin), os.path.abspath(working_dir)]) == os.path.abspath(
        working_dir)
    return working_dir if inside and not _installed(origin) else None


def _installed(origin: str) -> bool:
    return "site-packages" in origin or "dist-packages" in origin
