"""The three workloads the benchmarks compare: the digits MLP (~10 ms steps, so per-step overhead
dominates), the images CNN on Fashion-MNIST and the `lm` GPT (compute dominates), each its example
file with overrides that keep a benchmark run short. The CNN's augmentation is off where rayspeed is
compared with the native script (which trains on the prepared tensors as they are)."""

from dataclasses import dataclass

from harness import ROOT

from rayspeed.config import load_config

NO_AUGMENTATION = tuple(f"data.image.augment.{part}.probability=0" for part in ("flip", "rotation", "crop"))


@dataclass(frozen=True)
class Workload:
    key: str  # names its files and runs
    name: str
    config: str
    overrides: tuple[str, ...] = ()

    @property
    def first_logged_step(self) -> int:
        """The step of its first metrics row: the end of the warm-up window."""
        return load_config(self.config, list(self.overrides)).tracking.log_every_n_steps


MLP = Workload("mlp", "digits MLP", str(ROOT / "examples" / "digits.yaml"))
CNN = Workload("cnn", "images CNN", str(ROOT / "examples" / "images.yaml"),
               ("train.epochs=null", "train.max_steps=200", "tracking.log_every_n_steps=20", *NO_AUGMENTATION))
GPT = Workload("gpt", "lm GPT", str(ROOT / "examples" / "lm.yaml"),
               ("train.max_steps=100", "tracking.log_every_n_steps=10"))
WORKLOADS = {workload.key: workload for workload in (MLP, CNN, GPT)}
