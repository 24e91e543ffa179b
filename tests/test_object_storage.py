"""Data and runs in S3: a real S3-compatible server (moto) on loopback, reached through pyarrow."""

import json

import boto3
import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest
from conftest import artifact_versions, experiment, train
from moto.server import ThreadedMotoServer

from rayspeed.config import load_config
from rayspeed.errors import RunStateError
from rayspeed.runs.guard import claim_run
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers import wandb_records

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


def test_data_read_from_s3_trains_into_s3_and_resumes_from_it(tmp_path, ray_address, s3_uri, monkeypatch):
    """The acceptance round trip: data from s3://, checkpoints to s3://, a resumed run continuing
    from the checkpoint in s3:// with the preprocessing it saved there; W&B holds references to the
    checkpoints in s3://, not their bytes."""
    monkeypatch.setenv("HOME", str(tmp_path))  # a run in object storage keeps its W&B files in ~/.rayspeed/<name>
    endpoint = s3_uri.partition("?")[2]
    host_port = endpoint.split("&")[0].removeprefix("endpoint_override=")
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"x": rng.normal(size=1500), "kind": rng.choice(["a", "b", "c"], 1500)})
    table["label"] = np.where(table["x"] + (table["kind"] == "a") > 0.3, "yes", "no")
    boto3.client("s3", endpoint_url=f"http://{host_port}").put_object(
        Bucket="runs", Key="data/table.csv", Body=table.to_csv(index=False).encode())
    sections = {"run": {"name": "from-s3", "storage_path": s3_uri}, "tracking": {"log_checkpoints": "all"},
                "data": {"source": f"s3://runs/data/table.csv?{endpoint}"}}
    config = experiment(tmp_path, train={"epochs": 1}, **sections)
    first = train(config, ray_address)  # AWS_* reach the workers from this env
    assert first.final["val_accuracy"] > 0.8
    storage = RunStorage.open(s3_uri, "from-s3")
    saved = storage.read_text("preprocessing.json")
    assert json.loads(storage.read_text("data_report.json"))["rows_read"] == 1500
    latest = max(info.path for info in storage.filesystem.get_file_info(pafs.FileSelector(storage.path))
                 if info.base_name.startswith("step_"))
    files = {info.base_name for info in storage.filesystem.get_file_info(pafs.FileSelector(latest, recursive=True))}
    assert {"rng_rank0.pt", "rng_rank1.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "zero_pp_rank_1_mp_rank_00_optim_states.pt", "preprocessing.json"} <= files
    assert "test-secret" not in storage.read_text("config.yaml")
    with pytest.raises(RunStateError, match="already exists"):
        claim_run(load_config(config), storage)

    resumed = train(experiment(tmp_path, train={"epochs": 2}, **{**sections, "run": {**sections["run"],
                                                                                     "resume": "required"}}),
                    ray_address)
    steps = [json.loads(line)["step"] for line in storage.read_text("metrics.jsonl").splitlines()]
    assert steps == sorted(set(steps)) and resumed.steps == 2 * first.steps and steps[-1] == resumed.steps
    assert storage.read_text("preprocessing.json") == saved
    assert resumed.best_checkpoint.startswith("s3://runs/experiments/from-s3/step_")

    run_id = json.loads(storage.read_text("rayspeed.json"))["wandb_run_id"]
    records = [a for a in wandb_records.artifacts(tmp_path / ".rayspeed" / "from-s3" / "wandb", run_id)
               if a.type == "checkpoint"]
    versions = artifact_versions(records)[f"checkpoint-from-s3-{run_id}"]
    kept = sorted(info.base_name for info in storage.filesystem.get_file_info(pafs.FileSelector(storage.path))
                  if info.base_name.startswith("step_"))
    assert sorted(v["metadata"]["checkpoint"] for v in versions) == kept == sorted(  # once each, across the resume
        json.loads(r.metadata)["checkpoint"] for r in records)
    for version in versions:  # one reference per object, with its ETag; nothing uploaded
        prefix = f"s3://runs/experiments/from-s3/{version['metadata']['checkpoint']}/"
        objects = storage.filesystem.get_file_info(pafs.FileSelector(prefix.removeprefix("s3://"), recursive=True))
        assert sorted(e.ref for e in version["entries"]) == sorted(
            f"s3://{o.path}" for o in objects if o.type == pafs.FileType.File)
        assert all(e.digest and not e.local_path for e in version["entries"])
    assert [v["metadata"]["checkpoint"] for v in versions if "best" in v["aliases"]] == [
        resumed.best_checkpoint.rsplit("/", 1)[-1]]


def test_pictures_and_text_are_read_from_s3(tmp_path, ray_address, s3_uri):
    """The picture and text readers take the same URIs (pyarrow's S3 filesystem with the URI's options)."""
    import os

    import ray
    from PIL import Image
    from sklearn.datasets import load_digits

    from rayspeed.cluster.connection import job_runtime_env
    from rayspeed.cluster.credentials import credentials_in
    from rayspeed.datasets import build_datasets

    endpoint = s3_uri.partition("?")[2]
    client = boto3.client("s3", endpoint_url=f"http://{endpoint.split('&')[0].removeprefix('endpoint_override=')}")
    bunch = load_digits()
    for index in range(60):
        picture = tmp_path / "picture.png"
        Image.fromarray((bunch.images[index] * 255 / 16).astype(np.uint8), mode="L").save(picture)
        client.put_object(Bucket="runs", Key=f"pictures/digit_{bunch.target[index]}/{index}.png",
                          Body=picture.read_bytes())
    texts = {name: " ".join(f"{name}{i}" for i in range(200)).encode() for name in ("one", "two")}
    for name, content in texts.items():
        client.put_object(Bucket="runs", Key=f"texts/{name}.txt", Body=content)
    base = experiment(tmp_path, data={"source": f"s3://runs/pictures?{endpoint}", "format": "images"})
    # Ray Data's tasks get the credentials as rayspeed's own connection hands them over.
    ray.init(address=ray_address, runtime_env=job_runtime_env(code_dir=None, credentials=credentials_in(os.environ)))
    try:
        pictures = build_datasets(load_config(base).data, seed=0)
        text = load_config(experiment(
            tmp_path, data={"source": f"s3://runs/texts?{endpoint}", "format": "text", "task": "language_modeling",
                            "text": {"block_size": 16}},
            model={"name": "transformer", "args": {}},
            checkpoint={"score_metric": "val_perplexity", "score_mode": "min"})).data
        blocks = build_datasets(text, seed=0)
    finally:
        ray.shutdown()
    assert pictures.rows_read == 60 and pictures.input_spec.image_shape == [1, 8, 8]
    assert pictures.preprocessing.classes == sorted({f"digit_{d}" for d in bunch.target[:60]})
    assert blocks.rows_read == sum((len(content) + 1) // 17 for content in texts.values())
