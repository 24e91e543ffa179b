"""A real local multi-node cluster (`rayspeed cluster up`: `ray start` head + 2 worker nodes, token
auth on) and experiments submitted to it as Ray Jobs through the real `rayspeed` command.

The tests share one cluster and run in order: status, a submitted run stopped and resumed, a sweep,
errors, and last `cluster down`, which must leave no process of the cluster behind.

Credentials are the cluster's: `ray start` ran with a W&B key and an S3 key pair in its environment,
and the S3-compatible server rejects requests not signed with that pair. A submission sends none.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from secrets_support import files_under, leaks, ray_state, secret_forms, start_authenticated_s3

from rayspeed.cluster.local_cluster import processes_of, read_state

pytestmark = pytest.mark.ray

SECRET = f"wandb-secret-{uuid.uuid4().hex}"
MODEL = """
import time

from torch import nn


class Slow(nn.Sequential):
    \"\"\"Sleeps in training so that a stop lands mid-run.\"\"\"

    def forward(self, x):
        if self.training:
            time.sleep(0.1)
        return super().forward(x)


def build(*, num_features, num_classes, hidden):
    return Slow(nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
"""


@pytest.fixture(scope="module")
def s3():
    server = start_authenticated_s3()
    yield server
    server.process.terminate()
    server.process.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    """`rayspeed cluster up` with its own state directory, auth token file and credentials; `down` at
    the end."""
    home = tmp_path_factory.mktemp("rayspeed_home")
    token = home / "ray_token"
    token.write_text(uuid.uuid4().hex)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "RAY_ADDRESS", "WANDB_SERVICE", "RAY_AUTH_TOKEN")}
    env.update(RAYSPEED_HOME=str(home), RAY_AUTH_TOKEN_PATH=str(token), RAY_AUTH_MODE="token",
               WANDB_API_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1", **s3.pairs["storage"].env(),
               # W&B files of runs in object storage go to ~/.rayspeed/<run>: searched below, not left in
               # this $HOME. DeepSpeed's compiled ops stay where they are cached.
               HOME=str(home), TORCH_EXTENSIONS_DIR=torch_extensions_dir())
    up = rayspeed("cluster", "up", "--workers", "2", "--cpus-per-node", "2", "--object-store-mib", "200",
                  env=env, timeout=240)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"token authentication: on (token from RAY_AUTH_TOKEN_PATH ({token}))" in up.stdout
    yield env
    rayspeed("cluster", "down", env=env)


def torch_extensions_dir() -> str:
    """Where torch caches JIT-built extensions for this $HOME (DeepSpeed's shm op takes a minute to build)."""
    import torch
    from torch.utils.cpp_extension import get_default_build_root

    return os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
        get_default_build_root(), f"py{sys.version_info.major}{sys.version_info.minor}_"
                                  f"{'cu' + torch.version.cuda.replace('.', '') if torch.version.cuda else 'cpu'}")


def rayspeed(*args: str, env: dict, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rayspeed", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_status_shows_the_head_and_two_worker_nodes(cluster):
    result = rayspeed("cluster", "status", env=cluster)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "3 nodes alive" in lines[0]
    assert sum(line.strip().startswith("head") for line in lines) == 1
    assert sum(line.strip().startswith("worker") and "2 CPU" in line for line in lines) == 2


def test_submitted_run_with_a_user_model_stops_and_resumes(cluster, tmp_path):
    project, runs = tmp_path / "project", tmp_path / "runs"
    project.mkdir()
    (project / "tiny_net.py").write_text(MODEL)  # importable only from the shipped working dir
    (project / "digits.yaml").write_text(yaml.safe_dump({
        "data": {"source": "digits"},
        "model": {"factory": "tiny_net:build", "args": {"hidden": 32}},
        "train": {"epochs": 8, "global_batch": 64, "micro_batch_per_worker": 16, "lr": 3e-3},
        "scaling": {"num_workers": 2},
        "checkpoint": {"every_n_steps": 10, "keep": 2, "score_metric": "val_accuracy", "score_mode": "max"},
        "tracking": {"mode": "offline", "log_every_n_steps": 5},
        "run": {"name": "submitted", "storage_path": str(runs)},
    }))
    directory, total = runs / "submitted", 8 * 22  # long enough for the stop to land before the end

    first = rayspeed("submit", "digits.yaml", env=cluster, cwd=project)
    assert first.returncode == 0, first.stderr
    job = first.stdout.split("submitted job ")[1].split()[0]
    wait_for(directory / "checkpoint_manager_snapshot.json")
    stop = rayspeed("jobs", "stop", job, env=cluster)
    assert stop.returncode == 0 and f"job {job} STOPPED" in stop.stdout, stop.stdout + stop.stderr
    # SIGTERM to the driver: every rank checkpoints at one step boundary and the run ends there.
    snapshot = json.loads((directory / "checkpoint_manager_snapshot.json").read_text())
    latest = snapshot["latest_checkpoint_result"]
    stopped_at = latest["metrics"]["step"]
    assert stopped_at < total and latest["metrics"]["stop_requested"]
    periodic = [r["metrics"]["step"] for r in snapshot["checkpoint_results"] if "stop_requested" not in r["metrics"]]
    assert periodic and max(periodic) < stopped_at  # newer than the last periodic checkpoint
    assert {"train_state.json", "deepspeed", "manifest_rank1.json"} <= {
        p.name for p in (directory / latest["checkpoint_dir_name"]).iterdir()}
    last_row = json.loads((directory / "metrics.jsonl").read_text().splitlines()[-1])
    assert last_row["step"] == stopped_at and last_row["stop_requested"]
    logs = rayspeed("jobs", "logs", job, env=cluster).stdout
    assert "stop requested: checkpointing within about 0.5 s of training" in logs
    assert f"stopped by SIGTERM; the run stopped after a checkpoint at step {stopped_at} of {total}" in logs

    resumed = rayspeed("submit", "digits.yaml", "--resume", "--follow", env=cluster, cwd=project, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"all 2 ranks continued after the checkpoint of step {stopped_at}" in resumed.stdout
    assert "SUCCEEDED" in resumed.stdout.splitlines()[-1]
    rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == total and rows[-1]["val_accuracy"] > 0.5
    assert (directory / f"step_{total:08d}").is_dir()

    job = resumed.stdout.split("submitted job ")[1].split()[0]
    logs = rayspeed("jobs", "logs", job, env=cluster).stdout
    assert f"step {total}/{total}" in logs and "[rayspeed] best checkpoint:" in logs
    listed = rayspeed("jobs", "list", env=cluster).stdout
    assert f"{job}" in listed and "SUCCEEDED" in listed and "train submitted" in listed
    status = rayspeed("jobs", "status", job, env=cluster).stdout
    assert "SUCCEEDED" in status and "python -m rayspeed train digits.yaml --resume" in status

    # The W&B key is the cluster's: not in the job's environment, nor anywhere else.
    for text in (first.stdout, resumed.stdout, logs, listed, status,
                 *(p.read_text(errors="ignore") for p in directory.rglob("*") if p.is_file())):
        assert SECRET not in text


def test_a_sweep_is_submitted_the_same_way_and_no_credential_goes_with_it(cluster, s3, tmp_path):
    """Into object storage, with the cluster's own credentials; none of them is anywhere Ray or
    rayspeed wrote, nor in what the state API shows (the job's runtime_env, entrypoint, metadata)."""
    storage = f"s3://runs/sweeps?{s3.query}"
    sweep = {
        "data": {"source": "digits"},
        "model": {"name": "mlp", "args": {"hidden_sizes": [32]}},
        "train": {"epochs": 1, "global_batch": 64, "micro_batch_per_worker": 32, "lr": 3e-3},
        "scaling": {"num_workers": 1},
        "tracking": {"mode": "offline"},
        "tune": {"metric": "val_accuracy", "search": "grid", "num_samples": 1,
                 "space": {"train.lr": {"grid": [3e-3, 1e-2]}}},
        "run": {"name": "sweep", "storage_path": storage},
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    pair = s3.pairs["storage"]
    leaked = rayspeed("submit", "sweep.yaml", "--tune", f"run.storage_path=s3://{pair.in_uri()}@runs/sweeps",
                      env=cluster, cwd=tmp_path)
    assert leaked.returncode == 2 and "run.storage_path: carries credentials" in leaked.stderr, leaked.stderr

    result = rayspeed("submit", "sweep.yaml", "--tune", "--follow", env=cluster, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "python -m rayspeed tune sweep.yaml" in result.stdout and "SUCCEEDED" in result.stdout.splitlines()[-1]
    assert "no credentials are sent" in result.stdout
    stored = s3.objects("sweeps/")
    assert len([key for key in stored if key.startswith("sweeps/sweep/trials/") and key.endswith("/summary.json")]) == 2

    job = result.stdout.split("submitted job ")[1].split()[0]
    state = read_state(cluster)
    assert list(Path(cluster["HOME"]).glob(".rayspeed/*/wandb/offline-run-*"))  # the trials' W&B runs
    places = [("submit", leaked.stdout + leaked.stderr + result.stdout + result.stderr),
              ("job logs", rayspeed("jobs", "logs", job, env=cluster).stdout),
              ("job status", rayspeed("jobs", "status", job, env=cluster).stdout),
              *stored.items(), *[item for item in files_under(tmp_path) if item[0] != str(tmp_path / "sweep.yaml")],
              *files_under(Path(cluster["HOME"]), Path(state.temp_dir)), *ray_state(state.gcs_address, cluster)]
    assert leaks(secret_forms(s3, SECRET), places) == []


def test_bad_address_unreachable_cluster_and_wrong_token_fail_within_seconds(cluster):
    unreachable = f"http://127.0.0.1:{free_port()}"
    cases = [({"--address": "nonsense::"}, {}, "expected the cluster's dashboard as http://HOST:PORT"),
             ({"--address": unreachable}, {}, f"cannot reach the Ray dashboard at {unreachable}"),
             ({}, {"RAY_AUTH_TOKEN": "wrong"}, "refused the auth token from RAY_AUTH_TOKEN")]
    for options, extra_env, message in cases:
        started = time.monotonic()
        result = rayspeed("jobs", "list", *(part for item in options.items() for part in item),
                          env={**cluster, **extra_env})
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert time.monotonic() - started < 15


def test_cluster_down_leaves_no_ray_process(cluster):
    state = read_state(cluster)
    assert state is not None and processes_of(state.cluster_id)
    down = rayspeed("cluster", "down", env=cluster)
    assert down.returncode == 0 and "local cluster down" in down.stdout, down.stderr
    assert processes_of(state.cluster_id) == []
    gcs_port = state.gcs_address.rsplit(":", 1)[1]
    assert not [p for p in psutil_processes() if gcs_port in " ".join(p)]
    assert read_state(cluster) is None
    assert "no Ray cluster to talk to" in rayspeed("jobs", "list", env=cluster).stderr


def wait_for(path: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def psutil_processes() -> list[list[str]]:
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        found.append(process.info["cmdline"] or [])
    return found
