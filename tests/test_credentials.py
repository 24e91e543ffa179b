"""Credentials without a cluster: URIs redacted wherever they are shown, errors that carry them, and the
runtime_env that hands them over (its hook, never its env_vars)."""

import argparse
import os
import pickle

import pytest
from ray import cloudpickle

from rayspeed.cli_arguments import ray_arguments, ray_target
from rayspeed.cluster.connection import job_runtime_env
from rayspeed.cluster.credentials import credentials_hook, credentials_in
from rayspeed.config.redact import credential_fields, redact, redact_uri
from rayspeed.errors import ConfigError, DataError


@pytest.mark.parametrize("text, shown", [
    ("s3://AKIA:wJal/rK7+x@bucket/x.csv", "s3://<redacted>@bucket/x.csv"),  # a raw `/` in the secret
    ("s3://AKIA:wJal%2FrK7@bucket/x", "s3://<redacted>@bucket/x"),
    ("https://ghp_token@github.com/x.git", "https://<redacted>@github.com/x.git"),
    ("s3://b/x?endpoint_override=127.0.0.1:9000&scheme=http", "s3://b/x?endpoint_override=127.0.0.1:9000&scheme=http"),
    ("s3://b/x?access_key=A&secret_key=B%2F&region=eu", "s3://b/x?access_key=<redacted>&secret_key=<redacted>&region=eu"),
    ("https://acct.blob.core.windows.net/c?sv=1&sig=abc#f", "https://acct.blob.core.windows.net/c?sv=1&sig=<redacted>#f"),
    ("gs://b/o?X-Goog-Signature=abc", "gs://b/o?X-Goog-Signature=<redacted>"),
    ("[s3://b/x,s3://u:p@c/y]", "[s3://b/x,s3://<redacted>@c/y]"),
    ("s3://b?endpoint_override=http://u:p@minio:9000", "s3://b?endpoint_override=http://<redacted>@minio:9000"),
    ("cannot read 's3://u:p@b/x': no such key", "cannot read 's3://<redacted>@b/x': no such key"),
    ("run.storage_path=s3://A:B@b/r", "run.storage_path=s3://<redacted>@b/r"),
    ("ray://user:pw@head:10001", "ray://<redacted>@head:10001"),
    ("http://127.0.0.1:8265/api?x=1", "http://127.0.0.1:8265/api?x=1"),
    ("data/tokenizer.json", "data/tokenizer.json"),
])
def test_uris_keep_everything_but_their_credentials(text, shown):
    assert redact_uri(text) == shown
    assert redact_uri(shown) == shown


def test_errors_carry_no_credentials_however_they_are_shown():
    """Printed (str), logged by Ray (repr, tracebacks) and pickled into Tune's results."""
    error = DataError("data.source: cannot read 's3://AKIA:wJal/rK7@b/x.csv?secret_key=zz': no such key")
    config = ConfigError(["run.storage_path: s3://u:pw@b/x is not shared", "fine"])
    for shown in (str(error), repr(error), repr(pickle.loads(pickle.dumps(error))), str(config),
                  repr(config.problems), repr(pickle.loads(pickle.dumps(config)))):
        assert "wJal" not in shown and "zz" not in shown and "pw" not in shown and "<redacted>" in shown
    assert str(config).splitlines() == ["run.storage_path: s3://<redacted>@b/x is not shared", "fine"]


def test_saved_configs_and_refusals_see_the_same_credentials():
    values = {"data": {"source": "s3://k:s@b/x"}, "run": {"storage_path": "s3://b/runs?endpoint_override=h:1"},
              "model": {"args": {"api_key": "abc", "hidden": 3}}, "deepspeed": {"comm": "tcp"}}
    assert credential_fields(values) == ["data.source", "model.args.api_key"]
    assert redact(values)["run"] == values["run"] and redact(values)["data"]["source"] == "s3://<redacted>@b/x"


def test_credentials_go_in_a_setup_hook_not_in_env_vars():
    env = {"AWS_ACCESS_KEY_ID": "AKIA-X", "AWS_SECRET_ACCESS_KEY": "s3cret", "AWS_ENDPOINT_URL": "http://m:9",
           "WANDB_API_KEY": "wandb-k", "WANDB_MODE": "offline", "HOME": "/root"}
    credentials = credentials_in(env)
    assert credentials == {"AWS_ACCESS_KEY_ID": "AKIA-X", "AWS_SECRET_ACCESS_KEY": "s3cret",
                           "AWS_ENDPOINT_URL": "http://m:9", "WANDB_API_KEY": "wandb-k"}
    runtime_env = job_runtime_env(code_dir="/project", credentials=credentials)
    assert "env_vars" not in runtime_env and runtime_env["working_dir"] == "/project"
    hook = runtime_env["worker_process_setup_hook"]
    assert hook.__name__ == "rayspeed_credentials"  # what Ray shows in the runtime_env
    assert job_runtime_env(code_dir=None, credentials={}) is None

    saved = dict(os.environ)
    try:
        cloudpickle.loads(cloudpickle.dumps(credentials_hook({"RAYSPEED_TEST_CREDENTIAL": "v"})))()  # as Ray ships it
        assert os.environ["RAYSPEED_TEST_CREDENTIAL"] == "v"
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_cluster_credentials_need_a_cluster():
    parser = argparse.ArgumentParser()
    ray_arguments(parser)
    assert ray_target(parser.parse_args(["--address", "h:6379", "--cluster-credentials"]), {}).send_credentials is False
    assert ray_target(parser.parse_args(["--cluster-credentials"]), {"RAY_ADDRESS": "h:6379"}).address == "h:6379"
    assert ray_target(parser.parse_args([]), {}).send_credentials is True
    with pytest.raises(ConfigError, match="--cluster-credentials: only with a cluster"):
        ray_target(parser.parse_args(["--cluster-credentials"]), {})


def test_ray_client_addresses_cannot_take_credentials():
    """Ray Client sends the runtime_env as JSON, where a setup hook cannot go: refused before connecting."""
    from rayspeed.cluster.connection import connect
    from rayspeed.config.scaling import ScalingConfig
    from rayspeed.errors import ClusterError

    with pytest.raises(ClusterError, match="Ray Client cannot hand credentials .*AWS_ACCESS_KEY_ID"):
        with connect(ScalingConfig(), address="ray://u:pw@127.0.0.1:1", env={"AWS_ACCESS_KEY_ID": "k"}):
            pass
