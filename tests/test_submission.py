"""What `rayspeed submit` asks of Ray Jobs, built without a cluster: refused before anything is
uploaded when it would be lost on the cluster, and secrets only in the job's environment."""

import shlex

import pytest

from rayspeed.cluster.jobs import auth_token, jobs_address
from rayspeed.cluster.submission import job_request
from rayspeed.config.run import RunConfig
from rayspeed.errors import ClusterError, ConfigError


def request(tmp_path, *, storage: str, config: str = "exp.yaml", **kwargs):
    defaults = dict(verb="train", config_file=str(tmp_path / config), overrides=["train.lr=0.01"],
                    working_dir=str(tmp_path), flags=["--resume"], env={}, wandb_key=None, driver_cpus=1.0,
                    driver_on_head=True)
    return job_request(RunConfig(name="exp", storage_path=storage), **{**defaults, **kwargs})


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


def test_credentials_travel_in_the_job_environment_only(tmp_path):
    env = {"AWS_ACCESS_KEY_ID": "AKIA-X", "AWS_SECRET_ACCESS_KEY": "aws-secret", "WANDB_ENTITY": "team",
           "WANDB_API_KEY": "not-forwarded-unless-asked", "HOME": "/root"}
    job = request(tmp_path, storage="s3://bucket/runs", env=env, wandb_key="wandb-secret")
    assert job.runtime_env["env_vars"] == {"RAY_JOB_STOP_WAIT_TIME_S": "135", "AWS_ACCESS_KEY_ID": "AKIA-X",
                                           "AWS_SECRET_ACCESS_KEY": "aws-secret", "WANDB_ENTITY": "team",
                                           "WANDB_API_KEY": "wandb-secret", "RAYSPEED_DRIVER_CPUS": "1"}
    shown = job.entrypoint + repr(job.metadata) + job.submission_id + job.describe()
    assert "secret" not in shown and "AKIA" not in shown
    assert "WANDB_API_KEY" in job.describe()  # the names, so a user sees what went along


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
