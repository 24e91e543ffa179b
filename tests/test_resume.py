"""Failures and resumes with real processes and real signals: every one ends in a completed run whose
metrics file and W&B record hold each logged step exactly once.

- `rayspeed train` SIGKILLed after two checkpoints, and one file of the newest checkpoint cut short:
  without --resume it is refused and the run directory is untouched; with --resume (and one more
  epoch) the damaged checkpoint is named, set aside, and every rank continues after the previous one,
  re-planning the lr decay from there.
- A training worker SIGKILLed at a random step, then a worker of the restarted group SIGSTOPped (a
  hang): Ray restarts the group from the latest checkpoint, the hang watchdog names the stopped rank
  and ends that attempt, and the run ends within a point of an uninterrupted run's accuracy.
- A node hosting a training worker removed from a cluster with a spare node: the group moves on.
SIGTERM (a checkpoint at the next step, then --resume from it) is tested through `rayspeed jobs stop`
in test_jobs, which is how Ray Jobs and Kubernetes deliver it.
"""

import hashlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import artifact_versions, experiment, metrics, train

from rayspeed.trainers import wandb_records

pytestmark = pytest.mark.ray

LONG_RUN = {"train": {"epochs": 8}, "checkpoint": {"every_n_steps": 10}}
STEPS_PER_EPOCH = 22
# Runs whose accuracy is compared: 40% of the digits validate, so one point is 7 rows, not 2.
COMPARED = {**LONG_RUN, "data": {"source": "digits", "split": {"train": 0.6, "val": 0.4, "test": 0.0}}}
COMPARED_STEPS_PER_EPOCH = 17  # 1093 train rows: 546 per worker, 17 global batches of 64


def expected_steps(total: int, per_epoch: int = STEPS_PER_EPOCH) -> list[int]:
    return sorted({*range(5, total + 1, 5), *range(10, total + 1, 10), *range(per_epoch, total + 1, per_epoch)})


def start(config: Path, address: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rayspeed", "train", str(config), "--address", address, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, process: subprocess.Popen | None = None, timeout_s: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process is None or process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def checkpoints(directory: Path) -> list[str]:
    """The checkpoints Ray Train committed, oldest first (the snapshot is rewritten in place: a read
    may catch it half written)."""
    try:
        snapshot = json.loads((directory / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, ValueError):
        return []
    pairs = zip(snapshot["checkpoint_report_indices"], snapshot["checkpoint_results"], strict=True)
    return [result["checkpoint_dir_name"] for _, result in sorted(pairs, key=lambda pair: pair[0])]


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


def step_of(name: str) -> int:
    return int(name.removeprefix("step_"))


def test_killed_run_with_a_damaged_checkpoint_is_refused_without_resume_and_continues_with_it(tmp_path,
                                                                                              ray_address):
    config = experiment(tmp_path, run={"name": "resumable"}, tracking={"log_checkpoints": "all"}, **LONG_RUN)
    directory = tmp_path / "runs" / "resumable"
    first = start(config, ray_address)
    wait_for(lambda: len(checkpoints(directory)) >= 2, first, what="a second checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    settled_fingerprint(directory)  # the killed driver's controller and workers are gone
    *_, previous, newest = checkpoints(directory)
    assert step_of(newest) < 8 * STEPS_PER_EPOCH
    shard = max((directory / newest / "deepspeed").iterdir(), key=lambda p: p.stat().st_size)
    size = shard.stat().st_size
    with shard.open("r+b") as file:  # cut short, as a full disk or a killed copy leaves it
        file.truncate(size // 2)
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
    assert (f"checkpoint {directory / newest} is damaged and is skipped: deepspeed/{shard.name} has {size // 2} "
            f"bytes, the manifest says {size}") in output
    assert f"resuming from the newest intact checkpoint, {previous}" in output
    assert (directory / "corrupt" / newest / "deepspeed" / shard.name).stat().st_size == size // 2  # kept
    stopped_at = step_of(previous)
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

    # Checkpoint artifacts (log_checkpoints: all) across the kill: each checkpoint one version, logged
    # once (but the best, again, to take `best` back from the damaged one set aside); `best` on the run's
    # best, `latest` on its last checkpoint.
    records = [a for a in wandb_records.artifacts(directory / "wandb", run_id) if a.type == "checkpoint"]
    versions = artifact_versions(records)[f"checkpoint-resumable-{run_id}"]
    names = [version["metadata"]["checkpoint"] for version in versions]
    best = Path(json.loads((directory / "summary.json").read_text())["best_checkpoint"]).name
    assert len(names) == len(set(names)) and {p.name for p in directory.glob("step_*")} <= set(names)
    logged_twice = {name for name in names if [json.loads(r.metadata)["checkpoint"] for r in records].count(name) > 1}
    assert logged_twice <= {best}, logged_twice
    assert [v["metadata"]["checkpoint"] for v in versions if "best" in v["aliases"]] == [best]
    assert [v["metadata"]["checkpoint"] for v in versions if "latest" in v["aliases"]] == [f"step_{total:08d}"]


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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, ray_address) -> dict:
    """The last row of the long run trained without interruption: what an interrupted one must match."""
    config = experiment(tmp_path_factory.mktemp("uninterrupted"), run={"name": "uninterrupted"},
                        tracking={"mode": "disabled"}, **COMPARED)
    train(config, ray_address, wandb_mode="disabled")
    return metrics(config.parent / "runs" / "uninterrupted")[-1]


def test_killed_then_hung_worker_restart_from_checkpoints_and_end_like_an_uninterrupted_run(
        tmp_path, ray_address, uninterrupted):
    config = experiment(tmp_path, run={"name": "worker-killed", "max_failures": 2, "hang_timeout_s": 20},
                        tracking={"log_checkpoints": "all"}, **COMPARED)
    directory = tmp_path / "runs" / "worker-killed"
    process = start(config, ray_address)
    wait_for(lambda: checkpoints(directory), process, what="a first checkpoint")
    delay = random.Random(os.getpid()).uniform(0, 1.5)
    print(f"killing a worker {delay:.2f} s after the first checkpoint")
    time.sleep(delay)  # a random step after it
    killed = training_workers(ray_address)[0]
    os.kill(killed.pid, signal.SIGKILL)
    committed_at_kill = metrics(directory)[-1]["step"]
    log = directory / "rayspeed.log"
    wait_for(lambda: len(restores(log.read_text())) == 2, process, what="the restarted group's first step")
    restored = assert_every_rank_continued(directory, None)
    assert restored >= committed_at_kill - 10  # at most one checkpoint interval was trained again

    hung = next(worker for worker in training_workers(ray_address) if worker.pid != killed.pid)
    os.kill(hung.pid, signal.SIGSTOP)  # alive to the OS, silent to its peers and to Ray: a hang
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert re.search(r"no rank made progress for 20 s \(run.hang_timeout_s\): rank \d does not answer Ray; "
                     r"ending this attempt", output), output
    assert len(restores(log.read_text())) == 4  # both ranks, after each of the two failures

    rows = metrics(directory)
    total = 8 * COMPARED_STEPS_PER_EPOCH
    assert [row["step"] for row in rows] == expected_steps(total, COMPARED_STEPS_PER_EPOCH)
    assert abs(rows[-1]["val_accuracy"] - uninterrupted["val_accuracy"]) <= 0.01
    run_id = json.loads((directory / "rayspeed.json").read_text())["wandb_run_id"]
    logged = wandb_records.history(directory / "wandb", run_id)
    assert [r["_step"] for r in logged] == [row["step"] for row in rows]  # each step once, after the kill too
    reports = len({*range(10, total + 1, 10), *range(COMPARED_STEPS_PER_EPOCH, total + 1, COMPARED_STEPS_PER_EPOCH)})
    assert len(logged) > reports  # live rows, not only the reported ones
    artifacts = wandb_records.artifacts(directory / "wandb", run_id)  # each checkpoint once, through both restarts
    checkpoint_names = [json.loads(a.metadata)["checkpoint"] for a in artifacts if a.type == "checkpoint"]
    assert len(checkpoint_names) == len(set(checkpoint_names))
    assert {p.name for p in directory.glob("step_*")} <= set(checkpoint_names)
    assert len(output.splitlines()) < 40, output  # Ray's restart chatter is in the run log, not here
    assert "ActorDiedError" in log.read_text()  # the restart story is kept


def test_run_moves_to_a_spare_node_when_a_worker_node_is_removed(tmp_path, ray_cluster, uninterrupted):
    label = {"rayspeed-test-role": "trainer"}
    nodes = [ray_cluster.add_node(num_cpus=1, labels=label) for _ in range(3)]  # one spare
    removed = []
    try:
        config = experiment(tmp_path, run={"name": "node-lost", "max_failures": 1}, tracking={"mode": "disabled"},
                            scaling={"worker_node_labels": label}, **COMPARED)
        directory = tmp_path / "runs" / "node-lost"
        process = start(config, ray_cluster.address)
        wait_for(lambda: checkpoints(directory), process, what="a first checkpoint")
        used = {worker.node_id for worker in training_workers(ray_cluster.address)}
        assert used <= {node.node_id for node in nodes}, "workers ran off the labelled nodes"
        removed.append(next(node for node in nodes if node.node_id in used))
        ray_cluster.remove_node(removed[0], allow_graceful=False)  # every process of the node, at once
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output
    finally:
        for node in nodes:
            if node not in removed:
                ray_cluster.remove_node(node)
    restored = assert_every_rank_continued(directory, None)
    assert f"all 2 ranks continued after the checkpoint of step {restored}" in output
    rows = metrics(directory)
    assert [row["step"] for row in rows] == expected_steps(8 * COMPARED_STEPS_PER_EPOCH, COMPARED_STEPS_PER_EPOCH)
    assert abs(rows[-1]["val_accuracy"] - uninterrupted["val_accuracy"]) <= 0.01


def restores(log: str) -> list[tuple[int, int, int, int]]:
    """(rank, restored step, first step trained, DeepSpeed's global step) of each rank's report."""
    return [tuple(map(int, found)) for found in re.findall(
        r"rank (\d) restored the checkpoint of step (\d+), then trained step (\d+) \(DeepSpeed global step (\d+)\)",
        log)]


def assert_every_rank_continued(directory: Path, step: int | None) -> int:
    """Each rank's own report: the checkpoint step it restored, the next step it trained, and DeepSpeed's
    restored global step. Returns the restored step."""
    log = (directory / "rayspeed.log").read_text()
    found = {rank: tuple(values) for rank, *values in restores(log)}  # the latest restore of each rank
    assert set(found) == {0, 1}, log[-3000:]
    restored = {values[0] for values in found.values()}
    assert len(restored) == 1 and (step is None or restored == {step})
    step = restored.pop()
    assert step > 0 and all(values[1:] == (step + 1, step + 1) for values in found.values()), found
    return step


def training_workers(address: str) -> list:
    """The live Ray Train worker actors (pid, node_id), once there are two."""
    from ray.util.state import list_actors

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alive = list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
        if len(alive) == 2:
            return alive
        time.sleep(0.2)
    raise AssertionError("no two live RayTrainWorkers")
