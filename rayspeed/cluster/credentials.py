"""Credentials for every process of a run's Ray job, kept out of everything Ray shows or logs.

Ray shows a job's runtime_env, env_vars included, to anyone with the dashboard or the state API, and
its runtime-env agent writes it to its log. So credentials never go there. The driver hands its own
over as a worker setup hook instead. Ray keeps the function, with the values in it, in its internal
store beside the job's other functions. Every worker process of the job (Train controller and
workers, Ray Data tasks, Tune trials) runs the hook before its first task and sets the values in its
own environment. Only the hook's name shows in the runtime_env.
"""

import os
from collections.abc import Callable, Mapping

# What object storage (pyarrow, boto3) and W&B read from the environment: secrets first, then the
# settings that say where they apply.
SECRET_ENV = ("WANDB_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "AWS_SECURITY_TOKEN")
SETTINGS_ENV = ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "WANDB_BASE_URL", "WANDB_ENTITY")


def credentials_in(env: Mapping[str, str]) -> dict[str, str]:
    """The credentials and their settings that `env` has."""
    return {key: env[key] for key in (*SECRET_ENV, *SETTINGS_ENV) if env.get(key)}


def credentials_hook(values: Mapping[str, str]) -> Callable[[], None]:
    """A `worker_process_setup_hook` that sets `values` in the environment of each worker process."""
    values = dict(values)

    def rayspeed_credentials() -> None:
        os.environ.update(values)

    return rayspeed_credentials
