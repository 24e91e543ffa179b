"""Shared fixtures: one real local Ray cluster for the whole session, and tiny digits experiments."""

import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("WANDB_SILENT", "true")
# W&B's staging copies of logged checkpoints (kept until a `wandb sync` that tests never run): not in $HOME.
os.environ.setdefault("WANDB_DATA_DIR", tempfile.mkdtemp(prefix="rayspeed-tests-wandb-"))
os.environ.pop("WANDB_API_KEY", None)  # tests run W&B offline: tracking.mode auto -> offline
os.environ.pop("RAY_ADDRESS", None)

TINY_DIGITS = {
    "data": {"source": "digits"},
    "model": {"name": "mlp", "args": {"hidden_sizes": [64]}},
    # No warmup_steps: the default (0) must train (DeepSpeed's own schedulers refuse it).
    "train": {"epochs": 3, "global_batch": 64, "micro_batch_per_worker": 16, "lr": 3e-3, "zero_stage": 2},
    "scaling": {"num_workers": 2},
    "checkpoint": {"keep": 2, "score_metric": "val_accuracy", "score_mode": "max"},
    "tracking": {"log_every_n_steps": 5},
    "run": {"name": "tiny"},
}


def run_dir(tmp_path: Path, name: str) -> Path:
    return tmp_path / "runs" / name


def rayspeed_command(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`rayspeed ARGS` in a new process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "rayspeed", *args], capture_output=True, text=True, timeout=timeout)


def metrics(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]


def experiment(tmp_path: Path, **sections) -> Path:
    """Writes TINY_DIGITS updated section by section (`train={"zero_stage": 3}`), storing runs in tmp_path."""
    config = copy.deepcopy(TINY_DIGITS)
    config["run"]["storage_path"] = str(tmp_path / "runs")
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / f"{config['run']['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(autouse=True)
def own_wandb_service():
    """A `rayspeed` command a test starts gets its own W&B service. W&B tells child processes where
    this process's service listens (WANDB_SERVICE) once an in-process run used it; a SIGKILLed child's
    run would then stay registered there, and its resume fail with "run ID ... is in use"."""
    os.environ.pop("WANDB_SERVICE", None)
    yield
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray head with 6 logical CPUs: 2 training workers and Ray Data, or two 1-worker
    sweep trials side by side (each: its driver, its worker, Ray Data). A test may add a node and
    must remove it."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 6, "object_store_memory": 300 * 1024**2})
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_cluster):
    return ray_cluster.address


@pytest.fixture
def ray_session(ray_address):
    """This process connected to the session cluster for one test (fit() connects by itself instead)."""
    import ray

    ray.init(address=ray_address)
    yield ray_address
    ray.shutdown()


def train(config: Path, address: str, *, wandb_mode: str = "offline", working_dir: str | None = None):
    """What `rayspeed train` does, in this process: validate, pre-flight, claim, connect, fit."""
    from rayspeed.cluster.connection import connect
    from rayspeed.config import load_config
    from rayspeed.config.preflight import preflight
    from rayspeed.runs.guard import claim_run
    from rayspeed.runs.storage import RunStorage
    from rayspeed.trainers.driver import fit

    checked = preflight(load_config(config), working_dir=working_dir or os.getcwd())
    cfg = checked.cfg
    storage = RunStorage.open(cfg.run.storage_path, cfg.run.name)
    start = claim_run(cfg, storage)
    with connect(cfg.scaling, address=address, env=dict(os.environ), code_dir=checked.code_dir,
                 code_excludes=checked.code_excludes):
        return fit(cfg, storage=storage, start=start, wandb_mode=wandb_mode)


def wandb_config(wandb_dir: Path, run_id: str, *, kind: str = "config") -> dict:
    """The run config (or summary) as W&B recorded it: the run record's, then later updates."""
    from rayspeed.trainers import wandb_records

    found = {}
    for run_file in sorted(Path(wandb_dir).glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in wandb_records.records(run_file):
            which = record.WhichOneof("record_type")
            updates = (getattr(record.run, kind).update if which == "run"
                       else getattr(record, kind).update if which == kind else [])
            for item in updates:
                found[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return found


def artifact_versions(records) -> dict[str, list[dict]]:
    """Artifact records replayed as W&B's server keeps them: per collection, one version per content
    digest, in the order first logged; an alias moves to the version logged with it last."""
    collections: dict[str, list[dict]] = {}
    for record in records:
        versions = collections.setdefault(record.name, [])
        version = next((v for v in versions if v["digest"] == record.digest), None)
        if version is None:
            version = {"digest": record.digest, "metadata": json.loads(record.metadata or "{}"), "aliases": set(),
                       "entries": list(record.manifest.contents)}
            versions.append(version)
        for alias in record.aliases:
            for other in versions:
                other["aliases"].discard(alias)
            version["aliases"].add(alias)
    return collections


def logged_table(wandb_dir: Path, run_id: str, key: str) -> dict:
    """The last W&B table (or chart table) logged under `key` by the offline runs of `run_id`, read from
    the run's files: {"columns": [...], "data": [[...], ...]}."""
    from rayspeed.trainers import wandb_records

    path = [row[f"{key}/path"] for row in wandb_records.history(wandb_dir, run_id) if f"{key}/path" in row][-1]
    found = [run / "files" / path for run in Path(wandb_dir).glob(f"offline-run-*-{run_id}")
             if (run / "files" / path).is_file()]
    return json.loads(found[-1].read_text())
