"""Runs stored in S3: a real S3-compatible server (moto) on loopback, reached through pyarrow."""

import json

import boto3
import pyarrow.fs as pafs
import pytest
from conftest import experiment, train
from moto.server import ThreadedMotoServer

from rayspeed.config import load_config
from rayspeed.errors import RunStateError
from rayspeed.runs.guard import claim_run
from rayspeed.runs.storage import RunStorage

pytestmark = pytest.mark.ray


@pytest.fixture
def s3_uri(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="runs")
    yield f"s3://runs/experiments?endpoint_override={host}:{port}&scheme=http"
    server.stop()


def test_run_in_s3_keeps_both_ranks_files_and_its_metrics(tmp_path, ray_address, s3_uri):
    config = experiment(tmp_path, run={"name": "in-s3", "storage_path": s3_uri},
                        train={"epochs": 2}, tracking={"mode": "disabled"})
    cfg = load_config(config)
    summary = train(config, ray_address, wandb_mode="disabled")  # AWS_* reach the workers from this env
    assert summary.final["val_accuracy"] > 0.7
    assert summary.best_checkpoint.startswith("s3://runs/experiments/in-s3/step_")

    storage = RunStorage.open(s3_uri, "in-s3")
    latest = max(info.path for info in storage.filesystem.get_file_info(pafs.FileSelector(storage.path))
                 if info.base_name.startswith("step_"))
    files = {info.base_name for info in storage.filesystem.get_file_info(pafs.FileSelector(latest, recursive=True))}
    assert {"rng_rank0.pt", "rng_rank1.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= files
    steps = [json.loads(line)["step"] for line in storage.read_text("metrics.jsonl").splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 44
    assert "test-secret" not in storage.read_text("config.yaml")
    assert json.loads(storage.read_text("input_spec.json"))["feature_shape"] == [64]

    with pytest.raises(RunStateError, match="already exists"):
        claim_run(cfg, storage)
