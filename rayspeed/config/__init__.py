"""The experiment schema and its loader. Imports only pydantic and yaml, so it is fast to validate."""

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.load import load_config

__all__ = ["ExperimentConfig", "load_config"]
