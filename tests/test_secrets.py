"""Secrets never leak (the acceptance test): distinct fake secrets are planted in the shell's
environment (a W&B key, an AWS key pair) and in the experiment (another key pair as a URI's
user:password), then `rayspeed train --address` and `rayspeed tune --address` run on the session's
real local Ray cluster, storing in an S3-compatible server that rejects any request not signed with a
key pair it issued. The runs succeed, so the credentials reached every process that needed them; and
no byte rayspeed or Ray wrote holds any of them: the run directories, the W&B files, the console, the
Ray session's files, and what the state API shows of jobs, actors and tasks. (A submitted job, which
relies on the cluster's own environment, is checked in test_jobs.)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from botocore.exceptions import ClientError
from conftest import TINY_DIGITS
from secrets_support import (
    KeyPair,
    files_under,
    leaks,
    planted_wandb_key,
    ray_state,
    secret_forms,
    start_authenticated_s3,
)

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def s3():
    server = start_authenticated_s3()
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"x": rng.normal(size=600), "kind": rng.choice(["a", "b", "c"], 600)})
    table["label"] = np.where(table["x"] + (table["kind"] == "a") > 0.3, "yes", "no")
    server.client(server.pairs["data"]).put_object(Bucket="runs", Key="data/table.csv",
                                                   Body=table.to_csv(index=False).encode())
    yield server
    server.process.terminate()
    server.process.wait(10)


def test_planted_secrets_reach_the_runs_and_nothing_else(tmp_path, ray_cluster, ray_address, s3):
    wrong_secret = KeyPair(s3.pairs["storage"].key_id, "wrong")
    for unsigned in (None, wrong_secret):  # the server does check
        with pytest.raises(ClientError, match="InvalidAccessKeyId|SignatureDoesNotMatch"):
            s3.client(unsigned).list_objects_v2(Bucket="runs")
    wandb_key = planted_wandb_key()
    home = tmp_path / "home"  # W&B files of runs in object storage: ~/.rayspeed/<run>/wandb
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "WANDB_SERVICE")}
    env.update(s3.pairs["storage"].env(), AWS_DEFAULT_REGION="us-east-1", WANDB_API_KEY=wandb_key,
               WANDB_MODE="offline", HOME=str(home), RAY_AUTH_TOKEN_PATH=str(Path.home() / ".ray" / "auth_token"))
    experiment = {**TINY_DIGITS,
                  "data": {"source": f"s3://{s3.pairs['data'].in_uri()}@runs/data/table.csv?{s3.query}"},
                  "train": {**TINY_DIGITS["train"], "epochs": 1},
                  "tracking": {"mode": "auto", "log_checkpoints": "best"},
                  "run": {"name": "secret", "storage_path": f"s3://runs/experiments?{s3.query}"}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(experiment))
    sweep = {**experiment, "scaling": {"num_workers": 1}, "run": {**experiment["run"], "name": "secret-sweep"},
             "tune": {"metric": "val_accuracy", "search": "grid", "num_samples": 1,
                      "space": {"train.lr": {"grid": [3e-3, 1e-2]}}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))

    console = []
    for verb, config in (("train", "train.yaml"), ("tune", "sweep.yaml")):
        result = subprocess.run([sys.executable, "-m", "rayspeed", verb, config, "--address", ray_address],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        console += [(f"{verb} stdout", result.stdout), (f"{verb} stderr", result.stderr)]
    assert "handing AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, WANDB_API_KEY to its processes" in console[0][1]

    # Authenticated where they must: the data read (with the URI's key pair), checkpoints of every rank,
    # and the trials' runs.
    stored = s3.objects("experiments/")
    assert any(key.startswith("experiments/secret/step_") and key.endswith("rng_rank1.pt") for key in stored)
    assert json.loads(stored["experiments/secret/data_report.json"])["rows_read"] == 600
    assert len([key for key in stored if key.startswith("experiments/secret-sweep/trials/")
                and key.endswith("/summary.json")]) == 2
    # WANDB_MODE=offline with a key set: an offline run.
    assert list((home / ".rayspeed" / "secret" / "wandb").glob("offline-run-*"))
    assert "wandb sync" in console[0][1]

    inputs = {str(tmp_path / "train.yaml"), str(tmp_path / "sweep.yaml")}  # the user's own files
    written = [(where, content) for where, content in files_under(tmp_path) if where not in inputs]
    places = [*console, *stored.items(), *written,
              *files_under(Path(ray_cluster.head_node.get_session_dir_path())), *ray_state(ray_address, env)]
    assert leaks(secret_forms(s3, wandb_key), places) == []
