"""Stopping and continuing runs with real processes and real signals.

- `rayspeed train` killed after its first checkpoint, started again: without --resume it is refused
  and the run directory is untouched; with --resume it continues at the next step.
- A training worker killed mid-run: Ray restarts the group from the latest checkpoint (run.max_failures)
  and the metrics record neither repeats nor skips a step.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wandb_records
from conftest import experiment

pytestmark = pytest.mark.ray

LONG_RUN = {"train": {"epochs": 8}, "checkpoint": {"every_n_steps": 10}}
STEPS_PER_EPOCH = 22


def expected_steps(total: int) -> list[int]:
    return sorted({*range(5, total + 1, 5), *range(10, total + 1, 10), *range(STEPS_PER_EPOCH, total + 1,
                                                                               STEPS_PER_EPOCH)})


def start(config: Path, address: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rayspeed", "train", str(config), "--address", address, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def fingerprint(directory: Path) -> dict:
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def latest_checkpoint_step(directory: Path) -> int:
    return max(int(p.name.removeprefix("step_")) for p in directory.glob("step_*"))


def test_killed_run_is_refused_without_resume_and_continues_with_it(tmp_path, ray_address):
    config = experiment(tmp_path, run={"name": "resumable"}, **LONG_RUN)
    directory = tmp_path / "runs" / "resumable"
    first = start(config, ray_address)
    wait_for(directory / "checkpoint_manager_snapshot.json", first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    stopped_at = latest_checkpoint_step(directory)
    total = 8 * STEPS_PER_EPOCH
    assert stopped_at < total

    before = fingerprint(directory)
    refused = subprocess.run([sys.executable, "-m", "rayspeed", "train", str(config), "--address", ray_address],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "already exists" in refused.stderr and "--resume" in refused.stderr and "new run.name" in refused.stderr
    assert fingerprint(directory) == before

    resumed = start(config, ray_address, "--resume")
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "resuming run 'resumable'" in output
    for rank in (0, 1):
        assert f"rank {rank} continues after the checkpoint of step {stopped_at}" in output

    rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == expected_steps(total)  # no step repeated, none skipped
    assert rows[-1]["val_accuracy"] > 0.8

    run_id = json.loads((directory / "rayspeed.json").read_text())["wandb_run_id"]
    logged = wandb_records.history(directory / "wandb", run_id)  # every offline run of the id, in order
    assert [r["_step"] for r in logged] == [row["step"] for row in rows]
    assert [r["train/loss"] for r in logged] == [row["train_loss"] for row in rows]


def test_resume_of_a_missing_run_is_an_error(tmp_path, ray_address):
    config = experiment(tmp_path, run={"name": "never-ran"})
    result = subprocess.run([sys.executable, "-m", "rayspeed", "train", str(config), "--address", ray_address,
                             "--resume"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "nothing to resume" in result.stderr


def test_killed_worker_restarts_from_checkpoint_without_duplicate_metrics(tmp_path, ray_address):
    config = experiment(tmp_path, run={"name": "worker-killed", "max_failures": 2}, **LONG_RUN)
    directory = tmp_path / "runs" / "worker-killed"
    process = start(config, ray_address)
    wait_for(directory / "checkpoint_manager_snapshot.json", process)
    os.kill(training_worker_pid(ray_address), signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert "WorkerGroupError" in output or "restart" in output.lower()
    rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == expected_steps(8 * STEPS_PER_EPOCH)


def training_worker_pid(address: str) -> int:
    import ray
    from ray.util.state import list_actors

    ray.init(address=address)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alive = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
            if alive:
                return alive[0].pid
            time.sleep(0.2)
        raise AssertionError("no live RayTrainWorker")
    finally:
        ray.shutdown()
