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
from rayspeed.config.redact import REDACTED, redact
from rayspeed.errors import RunStateError
from rayspeed.runs.layout import CONFIG_FILE, IDENTITY_FILE, METRICS_FILE, RAY_SNAPSHOT
from rayspeed.runs.storage import RunStorage

# Changing these does not change what a checkpoint means, so a resumed run may differ in them.
RESUMABLE_CHANGES = ("train.epochs", "train.max_steps", "run.", "tracking.", "checkpoint.keep",
                     "checkpoint.every_n_steps", "scaling.cpus_per_worker", "scaling.data_cpus",
                     "scaling.worker_node_labels", "scaling.data_node_labels")
UNSAVED = "(not saved)"  # a key the saved config lacks (rayspeed added it later)
# A run being claimed by another process gets its identity, then its config, within milliseconds.
CLAIM_WAIT_TRIES, CLAIM_WAIT_S = 10, 0.5


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
    identity, saved_config = _complete_claim(cfg, storage)
    _check_same_experiment(cfg, storage, saved_config)
    run_id = identity["wandb_run_id"]
    if not storage.exists(RAY_SNAPSHOT):
        return RunStart(True, f"run '{cfg.run.name}' has no checkpoint yet: starting it again from step 0", run_id)
    return RunStart(True, f"resuming run '{cfg.run.name}' from its latest checkpoint at {where}", run_id)


def claimed_wandb_run_id(storage: RunStorage) -> str | None:
    """The W&B run id a run (or sweep) directory was claimed with; None for a directory never claimed."""
    identity = storage.read_text(IDENTITY_FILE)
    return json.loads(identity)["wandb_run_id"] if identity is not None else None


def release_claim(storage: RunStorage) -> bool:
    """Frees the name of a new run that failed before it trained (a config or data error found once
    Ray had read the data): removes its directory unless it holds a checkpoint or metrics."""
    if storage.exists(RAY_SNAPSHOT) or storage.exists(METRICS_FILE):
        return False
    storage.filesystem.delete_dir(storage.path)
    return True


def _complete_claim(cfg: ExperimentConfig, storage: RunStorage) -> tuple[dict, str]:
    """The identity and saved config of an existing run, waiting briefly for a claim in progress.

    Raises:
        RunStateError: the claim stays incomplete (another process is starting the run, or was killed
            while starting it).
    """
    for _ in range(CLAIM_WAIT_TRIES):
        identity, saved_config = storage.read_text(IDENTITY_FILE), storage.read_text(CONFIG_FILE)
        if identity and saved_config:
            return json.loads(identity), saved_config
        time.sleep(CLAIM_WAIT_S)
    raise RunStateError(
        f"run '{cfg.run.name}' at {storage.display()} has no complete claim ({IDENTITY_FILE} and {CONFIG_FILE}): "
        "another rayspeed process is starting it, or one was killed while starting it. Choose a new run.name, "
        "or remove that directory if no process uses it"
    )


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


def _check_same_experiment(cfg: ExperimentConfig, storage: RunStorage, saved_text: str) -> None:
    differences = [
        f"{key}: {old!r} -> {new!r}"
        for key, old, new in _diff(yaml.safe_load(saved_text), _comparable(cfg))
        if not any(key == allowed or key.startswith(allowed) for allowed in RESUMABLE_CHANGES)
        and old != REDACTED  # saved by an older rayspeed that redacted more keys (`tokenizer`)
        and not (old is UNSAVED and not new)  # a key added since the run was saved, at its empty default
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
            yield from _diff(old.get(key, UNSAVED), new.get(key), f"{prefix}{key}.")
    elif old != new:
        yield prefix.rstrip("."), old, new
