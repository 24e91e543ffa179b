"""The whole experiment file: one field per section, checked together once at load time."""

from typing import Any, Literal

from pydantic import Field, model_validator

from rayspeed.config import checks
from rayspeed.config.batch import BatchPlan, resolve_batch
from rayspeed.config.checkpoint import CheckpointConfig
from rayspeed.config.data import DataConfig
from rayspeed.config.deepspeed import deepspeed_config, merge_user_block
from rayspeed.config.k8s import K8sConfig
from rayspeed.config.model import MlpModel, ModelConfig
from rayspeed.config.run import RunConfig
from rayspeed.config.scaling import ScalingConfig
from rayspeed.config.section import Section
from rayspeed.config.tracking import TrackingConfig
from rayspeed.config.train import TrainConfig
from rayspeed.config.tune import TuneConfig
from rayspeed.errors import ConfigError


class ExperimentConfig(Section):
    """A validated experiment. Frozen: variants (overrides, sweep trials) are new validated objects."""

    schema_version: Literal[1] = 1
    """Version of this schema, so future versions can upgrade old files."""
    data: DataConfig = DataConfig()
    model: ModelConfig = MlpModel()
    """Which network to train (`name` + typed `args`, or `factory`); inputs and classes come from the data."""
    train: TrainConfig
    scaling: ScalingConfig = ScalingConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    tracking: TrackingConfig = TrackingConfig()
    run: RunConfig
    tune: TuneConfig | None = None
    """A hyperparameter search (`rayspeed tune`); `rayspeed train` ignores it."""
    k8s: K8sConfig = K8sConfig()
    """The KubeRay RayJob `rayspeed k8s render` makes of this experiment; training ignores it."""
    deepspeed: dict[str, Any] = Field(default_factory=dict)
    """Extra DeepSpeed settings merged into the generated config; contradicting the schema is an error."""

    @model_validator(mode="after")
    def _cross_section_rules(self):
        problems = checks.run_all(self.train, self.scaling, self.checkpoint, self.data, self.deepspeed, self.tune,
                                  self.model, self.k8s, self.run)
        if problems:
            raise ValueError(" | ".join(problems))
        return self

    def require_tune(self, *, source: str, verb: str) -> TuneConfig:
        """The search, for a verb that runs one.

        Raises:
            ConfigError: the file has no tune section.
        """
        if self.tune is None:
            raise ConfigError(f"{source}: tune: required by `{verb}` but missing (a search space, "
                              "e.g. tune: {space: {train.lr: {loguniform: [1.0e-4, 1.0e-2]}}})")
        return self.tune

    @property
    def batch(self) -> BatchPlan:
        return resolve_batch(self.train, num_workers=self.scaling.num_workers)

    def deepspeed_config(self) -> dict:
        """The DeepSpeed config this experiment runs with (the generated one plus the user block)."""
        return merge_user_block(deepspeed_config(self.train, self.batch), self.deepspeed)

    def resolved_dict(self) -> dict:
        """Every value spelled out, derived batch terms included: what `config show` prints and runs save."""
        resolved = self.model_dump(mode="json")
        resolved["train"].update(vars(self.batch))
        return resolved
