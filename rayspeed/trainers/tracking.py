"""Weights & Biases, from the driver process only: one W&B run per training run, rows logged at the
optimizer step as the driver commits them.

Exactly once: the driver commits a row to metrics.jsonl first, then hands it to W&B. A restarted
worker group repeats steps the driver already has, and the driver drops them. A killed driver may
take with it rows W&B had not written yet (its service buffers them), so a resumed run hands W&B
every committed row again before training goes on: W&B keeps a step only if it is higher than the
run's current one, so what it already has is dropped (online by the client, which knows the
server's step; offline when the files are synced) and what it lost is filled in, with the same
values, from metrics.jsonl. The W&B key stays in the driver's environment: workers and the Train
controller never need it.
"""

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class WandbSettings:
    """Everything `wandb.init` needs; `config` is already redacted."""

    project: str
    entity: str | None
    group: str | None
    mode: str
    run_id: str
    name: str
    dir: str
    config: dict = field(default_factory=dict)


class WandbSink:
    """Logs committed rows to one W&B run and remembers how far it got."""

    def __init__(self, settings: WandbSettings):
        self._settings = settings
        self.logged_step = 0
        self._run = None

    def start(self) -> None:
        """Starts (or resumes, same id) the W&B run; call from the driver's main thread."""
        import wandb

        settings = self._settings
        Path(settings.dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=settings.project, entity=settings.entity, group=settings.group,
                               mode=settings.mode, id=settings.run_id, name=settings.name, resume="allow",
                               dir=settings.dir, config=settings.config)

    def log(self, rows: list[dict]) -> None:
        rows = [row for row in rows if row["step"] > self.logged_step]
        if not rows or self._run is None:
            return
        for row in rows:
            self._run.log(scalars(row), step=row["step"])
        self.logged_step = rows[-1]["step"]

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


class NullSink:
    """`tracking.mode: disabled`."""

    def start(self) -> None:
        pass

    def log(self, rows: list[dict]) -> None:
        pass

    def finish(self) -> None:
        pass


def scalars(row: dict) -> dict[str, float]:
    """The numeric metrics of a row, namespaced for W&B (train/loss, val/accuracy, perf/...)."""
    out = {}
    for key, value in row.items():
        if key in ("step", "done") or isinstance(value, (list, dict, bool)):
            continue
        split, _, name = key.partition("_")
        if split in ("train", "val", "test"):
            out[f"{split}/{name}"] = value
        else:
            out[{"lr": "train/lr", "epoch": "epoch"}.get(key, f"perf/{key}")] = value
    return out
