"""What a submitted experiment asks of Ray Jobs: the entrypoint (`rayspeed train|tune` on the
cluster), the runtime_env that ships the user's working directory and this rayspeed, the
settings the job needs, where its driver runs, and metadata that finds it again.

No credential goes with the job: Ray shows a job's runtime_env, entrypoint and metadata to anyone
with the dashboard or state API, and keeps the shipped working directory on the nodes' disks. The
job's driver uses the cluster's own environment (that of `ray start`, or Kubernetes Secrets) and
hands it to the job's other processes (`cluster.credentials`).

The experiment is validated here, at the edge, but its local paths are not checked: they are the
cluster's. What would be lost or leaked on the cluster is refused now: a config outside the shipped
working directory, run storage inside the job's temporary copy of it, and credentials in the
experiment's values (URIs with a password or `secret_key=`), which travel in the shipped file and
the entrypoint.
"""

import math
import os
import shlex
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import rayspeed
from rayspeed.cluster.connection import CODE_EXCLUDES, DRIVER_CPUS_ENV
from rayspeed.cluster.credentials import SETTINGS_ENV
from rayspeed.config.data import has_uri_scheme
from rayspeed.config.experiment import ExperimentConfig
from rayspeed.config.preflight import path_inside
from rayspeed.config.redact import refuse_credentials
from rayspeed.errors import ConfigError

# Ray's own resource on the head node: the driver (and the Train controller pinned next to it) stays
# on the node that lives as long as the cluster, not on a worker that may be preempted.
HEAD_NODE_RESOURCE = "node:__internal_head__"
# Ray Jobs waits RAY_JOB_STOP_WAIT_TIME_S after SIGTERM before it SIGKILLs a stopped job's driver (Ray's
# default, 3 s, is too short): `run.stop_grace_s` to checkpoint, plus this long to close the run's W&B
# and log. Read by the job's supervisor from the job's env.
STOP_CLOSE_S = 15


@dataclass(frozen=True)
class JobRequest:
    """Keyword arguments of `JobSubmissionClient.submit_job`."""

    entrypoint: str
    runtime_env: dict
    metadata: dict[str, str]
    submission_id: str
    entrypoint_num_cpus: float
    entrypoint_resources: dict[str, float] | None

    def describe(self) -> str:
        """What goes with the job, and where its credentials come from."""
        shipped = ", ".join(sorted(self.runtime_env.get("env_vars", {})))
        return (f"entrypoint `{self.entrypoint}`, working dir {self.runtime_env['working_dir']}, "
                f"environment variables passed: {shipped}; no credentials are sent: the job uses the cluster's "
                "(the environment of `ray start`, or Kubernetes Secrets)")


def job_request(cfg: ExperimentConfig, *, verb: str, config_file: str, overrides: Sequence[str], working_dir: str,
                flags: Sequence[str], env: Mapping[str, str], driver_cpus: float, driver_on_head: bool) -> JobRequest:
    """Builds the submission of `rayspeed <verb> config_file overrides flags` from `working_dir`.

    Args:
        cfg: the validated experiment (with the overrides).
        flags: options of the verb on the cluster, e.g. ["--resume"].
        env: the submitting shell's environment: where object storage and W&B are (never their
            credentials) and the W&B mode go along.

    Raises:
        ConfigError: the config is outside `working_dir`, the run storage would not outlive the job,
            or a value carries credentials.
    """
    refuse_credentials(cfg.model_dump(mode="json"), exposed="which Ray would show with the job; give them to the "
                       "cluster's environment instead (`ray start`, or Kubernetes Secrets)")
    run = cfg.run
    working_dir = os.path.abspath(working_dir)
    config_path = os.path.abspath(config_file)
    if os.path.commonpath([config_path, working_dir]) != working_dir:
        raise ConfigError(f"{config_file}: the experiment file must be inside the working directory that is "
                          f"shipped to the cluster ({working_dir}); run `rayspeed submit` from its project directory")
    storage = run.storage_path
    if not has_uri_scheme(storage) and not os.path.isabs(os.path.expanduser(storage)):
        raise ConfigError(f"run.storage_path: {storage!r} is relative: on the cluster it would land in the job's "
                          "temporary copy of the working directory and be lost. Use object storage "
                          "(s3://bucket/runs) or an absolute path every node shares")
    env_vars = {"RAY_JOB_STOP_WAIT_TIME_S": str(math.ceil(run.stop_grace_s + STOP_CLOSE_S)),  # Ray reads an int
                **{key: env[key] for key in (*SETTINGS_ENV, "WANDB_MODE") if key in env}}
    env_vars[DRIVER_CPUS_ENV] = f"{driver_cpus:g}"
    command = [verb, os.path.relpath(config_path, working_dir), *overrides, *flags]
    excludes = [*CODE_EXCLUDES, *filter(None, [path_inside(storage, working_dir)])]
    return JobRequest(
        entrypoint=f"python -m rayspeed {shlex.join(command)}",
        runtime_env={"working_dir": working_dir, "py_modules": [os.path.dirname(rayspeed.__file__)],
                     "excludes": excludes, "env_vars": env_vars},
        metadata={"rayspeed_verb": verb, "rayspeed_run": run.name, "rayspeed_config": command[1],
                  "rayspeed_storage": storage},
        submission_id=f"rayspeed-{run.name}-{uuid.uuid4().hex[:8]}",
        entrypoint_num_cpus=driver_cpus,
        entrypoint_resources={HEAD_NODE_RESOURCE: 0.001} if driver_on_head else None,
    )

