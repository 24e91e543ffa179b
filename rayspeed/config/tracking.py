"""The `tracking` section: Weights & Biases and the local metrics log."""

from typing import Literal

from pydantic import PositiveInt

from rayspeed.config.section import Section


class TrackingConfig(Section):
    """W&B settings. The API key is never a config value: it comes from WANDB_API_KEY."""

    project: str = "rayspeed"
    """W&B project."""
    entity: str | None = None
    """W&B entity (team or user); default: the key's default entity."""
    group: str | None = None
    """W&B group, e.g. to gather the runs of one sweep."""
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    """`auto` is online when WANDB_API_KEY is set and offline otherwise."""
    log_every_n_steps: PositiveInt = 10
    """Optimizer steps between metric reports (each report is a sync point of all workers)."""
