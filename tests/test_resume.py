"""Stopping and continuing runs with real processes and real signals.

- `rayspeed train` killed after its first checkpoint, started again: without --resume it is refused
  and the run directory is untouched; with --resume and more epochs it continues at the next step on
  every rank and re-plans the lr decay from there.
- A training worker killed mid-run: Ray restarts the group from the latest checkpoint (run.max_failures);
  every rank restores that step and trains the next one, and the metrics file and W&B record every
  step exactly once, live rows included.
"""

import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import experiment, metrics

from rayspeed.trainers import wandb_records

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
    """Every file but W&B's: a SIGKILLed driver's W&B service (a child of it) may outlive it and flush
    its output.log seconds later, while a refused command starts no W&B at all."""
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.rglob("*")) if p.is_file() and "wandb" not in p.relative_to(directory).parts}


def settled_fingerprint(directory: Path, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    previous = fingerprint(directory)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        current = fingerprint(directory)
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"{directory} kept changing")


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
    assert stopped_at < 8 * STEPS_PER_EPOCH
    committed_before = metrics(directory)[-1]["step"]  # live rows the killed driver committed

    before = settled_fingerprint(directory)
    refused = subprocess.run([sys.executable, "-m", "rayspeed", "train", str(config), "--address", ray_address],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "already exists" in refused.stderr and "--resume" in refused.stderr and "new run.name" in refused.stderr
    assert fingerprint(directory) == before

    total = 9 * STEPS_PER_EPOCH  # extended by one epoch while resuming
    resumed = start(config, ray_address, "--resume", "train.epochs=9")
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "resuming run 'resumable'" in output
    assert f"all 2 ranks continued after the checkpoint of step {stopped_at}" in output
    assert_every_rank_continued(directory, stopped_at)

    rows = metrics(directory)
    assert [row["step"] for row in rows] == expected_steps(total)  # no step repeated, none skipped
    assert rows[-1]["val_accuracy"] > 0.8
    for row in rows:  # the lr follows the first plan until the resumed run's rows, then the re-planned decay
        plan_total, anchor = (8 * STEPS_PER_EPOCH, None) if row["step"] <= committed_before else (total, stopped_at)
        assert row["lr"] == pytest.approx(cosine_lr(row["step"], plan_total, anchor), rel=1e-6), row["step"]

    # The killed driver's W&B service may not have written its last rows: the resumed run hands W&B the
    # committed rows after the last step the earlier offline files hold, so each step is there once.
    run_id = json.loads((directory / "rayspeed.json").read_text())["wandb_run_id"]
    logged = wandb_records.history(directory / "wandb", run_id)  # every offline run of the id, in order
    assert [r["_step"] for r in logged] == [row["step"] for row in rows]
    assert [r["train/loss"] for r in logged] == [row["train_loss"] for row in rows]


def cosine_lr(step: int, total: int, anchor: int | None, peak: float = 3e-3) -> float:
    """The lr optimizer step `step` used: cosine to 0 over the run, or from the lr at `anchor` when extended."""
    def cosine(done: int, start: int, end: int, height: float) -> float:
        return height * 0.5 * (1 + math.cos(math.pi * min(max(done - start, 0) / (end - 1 - start), 1)))

    if anchor is None:
        return cosine(step - 1, 0, total, peak)
    return cosine(step - 1, anchor, total, cosine(anchor, 0, 8 * STEPS_PER_EPOCH, peak))


def test_resume_of_a_missing_run_is_an_error(tmp_path, ray_address):
    config = experiment(tmp_path, run={"name": "never-ran"})
    result = subprocess.run([sys.executable, "-m", "rayspeed", "train", str(config), "--address", ray_address,
                             "--resume"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "nothing to resume" in result.stderr


def test_killed_worker_restarts_from_checkpoint_on_every_rank_and_logs_each_step_once(tmp_path, ray_address):
    config = experiment(tmp_path, run={"name": "worker-killed", "max_failures": 2}, **LONG_RUN)
    directory = tmp_path / "runs" / "worker-killed"
    process = start(config, ray_address)
    wait_for(directory / "checkpoint_manager_snapshot.json", process)
    os.kill(training_worker_pid(ray_address), signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    restored = assert_every_rank_continued(directory, None)
    assert f"all 2 ranks continued after the checkpoint of step {restored}" in output

    rows = metrics(directory)
    total = 8 * STEPS_PER_EPOCH
    assert [row["step"] for row in rows] == expected_steps(total)
    run_id = json.loads((directory / "rayspeed.json").read_text())["wandb_run_id"]
    logged = wandb_records.history(directory / "wandb", run_id)
    assert [r["_step"] for r in logged] == [row["step"] for row in rows]  # each step once, after the kill too
    reports = len({*range(10, total + 1, 10), *range(STEPS_PER_EPOCH, total + 1, STEPS_PER_EPOCH)})
    assert len(logged) > reports  # live rows, not only the reported ones
    assert len(output.splitlines()) < 40, output  # Ray's restart chatter is in the run log, not here
    assert "ActorDiedError" in (directory / "rayspeed.log").read_text()  # the restart story is kept


def assert_every_rank_continued(directory: Path, step: int | None) -> int:
    """Each rank's own report: the checkpoint step it restored, the next step it trained, and DeepSpeed's
    restored global step. Returns the restored step."""
    log = (directory / "rayspeed.log").read_text()
    found = {int(rank): (int(restored), int(first), int(engine)) for rank, restored, first, engine in re.findall(
        r"rank (\d) restored the checkpoint of step (\d+), then trained step (\d+) \(DeepSpeed global step (\d+)\)",
        log)}
    assert set(found) == {0, 1}, log[-3000:]
    restored = {values[0] for values in found.values()}
    assert len(restored) == 1 and (step is None or restored == {step})
    step = restored.pop()
    assert step > 0 and all(values[1:] == (step + 1, step + 1) for values in found.values()), found
    return step


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
