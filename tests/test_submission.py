"""What `rayspeed submit` asks of Ray Jobs, built without a cluster: refused before anything is
uploaded when it would be lost or leaked on the cluster, and never a credential in it."""

import shlex

import pytest

from rayspeed.cluster.jobs import auth_token, jobs_address
from rayspeed.cluster.submission import job_request
from rayspeed.config.experiment import ExperimentConfig
from rayspeed.errors import ClusterError, ConfigError


def request(tmp_path, *, storage: str, config: str = "exp.yaml", source: str = "digits", **kwargs):
    defaults = dict(verb="train", config_file=str(tmp_path / config), overrides=["train.lr=0.01"],
                    working_dir=str(tmp_path), flags=["--resume"], env={}, driver_cpus=1.0, driver_on_head=True)
    cfg = ExperimentConfig.model_validate({"data": {"source": source}, "train": {"epochs": 1, "global_batch": 8},
                                           "run": {"name": "exp", "storage_path": storage}})
    return job_request(cfg, **{**defaults, **kwargs})


def test_entrypoint_runs_the_verb_on_the_shipped_copy_of_the_working_dir(tmp_path):
    job = request(tmp_path, storage=str(tmp_path / "runs"), config="configs/exp.yaml")
    assert shlex.split(job.entrypoint) == ["python", "-m", "rayspeed", "train", "configs/exp.yaml", "train.lr=0.01",
                                           "--resume"]
    assert job.runtime_env["working_dir"] == str(tmp_path)
    assert job.runtime_env["py_modules"][0].endswith("rayspeed")  # this rayspeed, whatever the cluster has
    assert "/runs" in job.runtime_env["excludes"] and ".git" in job.runtime_env["excludes"]
    assert job.metadata == {"rayspeed_verb": "train", "rayspeed_run": "exp", "rayspeed_config": "configs/exp.yaml",
                            "rayspeed_storage": str(tmp_path / "runs")}
    assert job.submission_id.startswith("rayspeed-exp-")
    assert job.entrypoint_num_cpus == 1.0 and job.entrypoint_resources == {"node:__internal_head__": 0.001}
    assert request(tmp_path, storage="s3://bucket/runs", driver_on_head=False).entrypoint_resources is None


def test_what_the_cluster_would_lose_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="run.storage_path: 'runs' is relative"):
        request(tmp_path, storage="runs")
    with pytest.raises(ConfigError, match="must be inside the working directory"):
        request(tmp_path, storage="s3://bucket/runs", config_file="/elsewhere/exp.yaml")


def test_no_credential_goes_with_the_job(tmp_path):
    """Ray shows a job's runtime_env, entrypoint and metadata: only where things are goes along."""
    env = {"AWS_ACCESS_KEY_ID": "AKIA-X", "AWS_SECRET_ACCESS_KEY": "aws-secret", "AWS_SESSION_TOKEN": "aws-token",
           "AWS_ENDPOINT_URL": "http://minio:9000", "WANDB_ENTITY": "team", "WANDB_MODE": "offline",
           "WANDB_API_KEY": "wandb-secret", "HOME": "/root"}
    job = request(tmp_path, storage="s3://bucket/runs", env=env)
    assert job.runtime_env["env_vars"] == {"RAY_JOB_STOP_WAIT_TIME_S": "135", "AWS_ENDPOINT_URL": "http://minio:9000",
                                           "WANDB_ENTITY": "team", "WANDB_MODE": "offline",
                                           "RAYSPEED_DRIVER_CPUS": "1"}
    assert "no credentials are sent: the job uses the cluster's" in job.describe()


@pytest.mark.parametrize("field, kwargs", [
    ("run.storage_path", {"storage": "s3://AKIA:pw@bucket/runs"}),
    ("data.source", {"storage": "s3://bucket/runs", "source": "s3://bucket/x.csv?secret_key=pw"}),
])
def test_credentials_in_the_experiment_are_refused(tmp_path, field, kwargs):
    """They would be in the shipped file or the entrypoint (an override's value is in the config too)."""
    with pytest.raises(ConfigError, match=f"{field}: carries credentials, which Ray would show"):
        request(tmp_path, **kwargs)


def test_the_jobs_address_and_token_follow_ray_and_the_local_cluster(tmp_path):
    assert jobs_address("http://head:8265", {"RAY_ADDRESS": "http://other:8265"}) == "http://head:8265"
    assert jobs_address(None, {"RAY_ADDRESS": "10.0.0.1:6379", "RAY_API_SERVER_ADDRESS": "http://api:8265"}) == \
        "http://api:8265"
    with pytest.raises(ClusterError, match="rayspeed cluster up"):
        jobs_address(None, {"RAY_ADDRESS": "10.0.0.1:6379", "RAYSPEED_HOME": str(tmp_path)})

    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    home = tmp_path / "home"
    assert auth_token({"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(token_file)}).value == "from-env"
    found = auth_token({"RAY_AUTH_TOKEN_PATH": str(token_file), "HOME": str(home)})
    assert found.value == "from-file" and found.source == f"RAY_AUTH_TOKEN_PATH ({token_file})"
    assert auth_token({"HOME": str(home)}) is None
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("from-home")
    assert auth_token({"HOME": str(home)}).source == "~/.ray/auth_token"
    assert auth_token({"HOME": str(home)}, default_file=False) is None  # not sent to just any address
