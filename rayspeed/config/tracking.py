"""The `tracking` section: Weights & Biases and the local metrics log."""

from collections.abc import Mapping
from typing import Literal

from pydantic import PositiveInt, model_validator

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
    """`auto`: WANDB_MODE when set, else online when WANDB_API_KEY is set (offline when its server does
    not answer), else offline."""
    log_every_n_steps: PositiveInt = 10
    """Optimizer steps between metric reports (each report is a sync point of all workers)."""
    log_checkpoints: Literal["none", "best", "all"] | None = None
    """Checkpoints as W&B artifacts (type `checkpoint`, aliases `best` and `latest`): each new best
    checkpoint, every checkpoint, or none; unset: best (none with W&B disabled). Object storage is
    referenced, a local disk uploaded. Asking for them with W&B disabled is an error."""

    @model_validator(mode="after")
    def _checkpoints_need_wandb(self):
        if self.mode == "disabled" and self.log_checkpoints not in (None, "none"):
            raise ValueError(f"tracking.log_checkpoints: {self.log_checkpoints} logs checkpoints to W&B, but "
                             "tracking.mode is disabled: enable W&B (auto, online, offline) or set it to none")
        return self

    @property
    def checkpoint_artifacts(self) -> str:
        """`log_checkpoints` with its default filled in."""
        return self.log_checkpoints or "best"

    def mode_in(self, env: Mapping[str, str]) -> str:
        """`mode`, where `auto` means: WANDB_MODE if set, else online with a key, else offline."""
        if self.mode != "auto":
            return self.mode
        if env.get("WANDB_MODE") in ("online", "offline", "disabled"):
            return env["WANDB_MODE"]
        return "online" if env.get("WANDB_API_KEY") else "offline"
