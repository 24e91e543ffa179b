"""Decides, before any Ray work, whether a run starts fresh or continues; never silently either.

Ray 2.60 silently resumes any reused (storage_path, name); this guard makes that explicit, and a
new run is claimed atomically, so two commands started together with one name cannot both proceed.
"""

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass

import yaml

from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.redact import redact
from rayspeed.errors import RunStateError
from rayspeed.runs.layout import CONFIG_FILE, IDENTITY_FILE, RAY_SNAPSHOT
from rayspeed.runs.storage import RunStorage

# Changing these does not change what a checkpoint means, so a resumed run may differ in them.
RESUMABLE_CHANGES = ("train.epochs", "train.max_steps", "run.", "tracking.", "checkpoint.keep",
                     "checkpoint.every_n_steps", "scaling.cpus_per_worker", "scaling.data_cpus")


@dataclass(frozen=True)
class RunStart:
    resuming: bool
    message: str
    wandb_run_id: str


def claim_run(cfg: ExperimentConfig, storage: RunStorage) -> RunStart:
    """Checks the run directory against `run.resume`; a new run is claimed (identity and config
    written), an existing one is only read.

    Raises:
        RunStateError: the name is taken and resume is off (or another process claimed it first),
            there is nothing to resume, or the config differs from the saved one in a way the
            checkpoint cannot follow.
    """
    where = storage.display()
    mode = cfg.run.resume
    if not storage.has_content():
        if mode == "required":
            raise RunStateError(f"nothing to resume: run '{cfg.run.name}' does not exist at {where}; "
                                "drop --resume to start it")
        return _claim_new(cfg, storage)
    if mode == "never":
        raise RunStateError(
            f"run '{cfg.run.name}' already exists at {where}. Pass --resume (or run.resume=auto) to continue "
            "it from its latest checkpoint, or choose a new run.name; nothing was changed"
        )
    _check_same_experiment(cfg, storage)
    identity = json.loads(storage.read_text(IDENTITY_FILE) or "{}")
    run_id = identity.get("wandb_run_id") or _new_identity()["wandb_run_id"]
    if not storage.exists(RAY_SNAPSHOT):
        return RunStart(True, f"run '{cfg.run.name}' has no checkpoint yet: starting it again from step 0", run_id)
    return RunStart(True, f"resuming run '{cfg.run.name}' from its latest checkpoint at {where}", run_id)


def _claim_new(cfg: ExperimentConfig, storage: RunStorage) -> RunStart:
    identity = _new_identity()
    if not storage.create_exclusively(json.dumps(identity), IDENTITY_FILE):
        raise RunStateError(
            f"run '{cfg.run.name}' was just claimed at {storage.display()} by another rayspeed process; "
            "choose a new run.name; nothing was changed"
        )
    storage.write(yaml.safe_dump(_comparable(cfg), sort_keys=False), CONFIG_FILE)
    return RunStart(False, f"starting new run '{cfg.run.name}' at {storage.display()}", identity["wandb_run_id"])


def _new_identity() -> dict:
    return {"wandb_run_id": secrets.token_hex(4), "claimed_by": f"{socket.gethostname()}:{os.getpid()}",
            "claimed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _check_same_experiment(cfg: ExperimentConfig, storage: RunStorage) -> None:
    saved_text = storage.read_text(CONFIG_FILE)
    if saved_text is None:
        return
    differences = [
        f"{key}: {old!r} -> {new!r}"
        for key, old, new in _diff(yaml.safe_load(saved_text), _comparable(cfg))
        if not any(key == allowed or key.startswith(allowed) for allowed in RESUMABLE_CHANGES)
    ]
    if differences:
        raise RunStateError(
            f"cannot resume run '{cfg.run.name}': its checkpoints were made with a different config "
            f"({'; '.join(differences)}). Use the saved config ({storage.display(CONFIG_FILE)}) or a new run.name"
        )


def _comparable(cfg: ExperimentConfig) -> dict:
    """The config as it is saved, so both sides of the comparison went through the same redaction."""
    return redact(cfg.resolved_dict())


def _diff(old, new, prefix: str = ""):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from _diff(old.get(key), new.get(key), f"{prefix}{key}.")
    elif old != new:
        yield prefix.rstrip("."), old, new
