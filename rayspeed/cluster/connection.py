"""Starts an embedded Ray or connects to one, and refuses scaling the cluster can never satisfy.

Ray 2.60 would otherwise wait forever: for unreachable addresses, for infeasible workers (the
controller retries worker-group startup without limit), and for Ray Data when training workers
hold every CPU (the input pipeline's map tasks never get scheduled).
"""

import contextlib
import math
import os
import socket
from collections.abc import Iterator, Mapping, Sequence

import ray

from rayspeed.cluster.credentials import SECRET_ENV, credentials_hook, credentials_in
from rayspeed.cluster.shared_storage import check_storage_is_shared
from rayspeed.config.redact import redact_uri
from rayspeed.config.scaling import ScalingConfig
from rayspeed.errors import ClusterError

CONNECT_TIMEOUT_S = 5.0
# The Train controller collects reports at this interval and each worker's report queue holds one,
# so Ray's default (2 s) stalls workers that report more often; Ray propagates it to the controller.
CONTROLLER_POLL_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}
# CPUs a submitted job's driver holds (`rayspeed submit` sets it): the workers cannot use them.
DRIVER_CPUS_ENV = "RAYSPEED_DRIVER_CPUS"
# Set by Ray Jobs in a submitted job's driver: the job's runtime_env already ships the code, and
# Ray refuses a driver's runtime_env that repeats its fields.
INSIDE_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


# Never uploaded with a code directory: version control, caches, environments, run output.
CODE_EXCLUDES = [".git", "__pycache__", "*.pyc", "wandb", ".venv", "venv", "*.egg-info", "*.ckpt", "*.pt"]


@contextlib.contextmanager
def connect(scaling: ScalingConfig, *, address: str | None, env: Mapping[str, str],
            code_dir: str | None = None, code_excludes: Sequence[str] = (),
            embedded_cpus: int | None = None, storage_path: str | None = None,
            send_credentials: bool = True) -> Iterator[str]:
    """Ray for the duration of the block; yields a description of the cluster.

    Args:
        scaling: what the run will ask of the cluster.
        address: a Ray address (host:port, ray://..., auto), or None for an embedded local Ray.
        env: the caller's environment, whose credentials (`credentials.SECRET_ENV`) go to the job's
            processes on a cluster, outside the runtime_env.
        code_dir: a directory every process of the job gets as its working directory and on its
            Python path (Ray uploads it), e.g. where the user's model module lives.
        code_excludes: paths in `code_dir` not to upload (gitignore syntax), e.g. its data.
        embedded_cpus: logical CPUs of an embedded Ray, when one run's share is not the measure
            (a sweep: its concurrent trials); default `local_cpus(scaling)`.
        storage_path: run storage every node of a cluster must see (checked when joining one).
        send_credentials: False when the cluster's processes have credentials of their own (the
            environment of `ray start`, Kubernetes Secrets), which the caller's would replace.
    """
    for key, value in CONTROLLER_POLL_ENV.items():
        os.environ.setdefault(key, value)
    inside_job = INSIDE_JOB_ENV in env
    # An embedded Ray's processes inherit this process's environment; a cluster's do not.
    credentials = credentials_in(env) if send_credentials and (address or inside_job) else {}
    runtime_env = job_runtime_env(code_dir=None if inside_job else code_dir, excludes=code_excludes,
                                  credentials=credentials)
    if credentials and (address or "").startswith("ray://"):
        raise ClusterError(f"--address {redact_uri(address)}: Ray Client cannot hand credentials ("
                           f"{', '.join(sorted(credentials))}) to the cluster's processes outside their runtime_env; "
                           "use the cluster's GCS address (HOST:6379), or --cluster-credentials when its processes "
                           "have their own")
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        except ConnectionError as error:  # reachable, but refused us (e.g. its auth token is not here)
            cause = str(error.__cause__ or error).strip().splitlines()[-1][:300]
            raise ClusterError(f"cannot join the Ray cluster at {address}: {error} ({cause})") from None
        where = f"Ray cluster at {redact_uri(address)}"
    else:
        # "local" starts a new instance even when another Ray runs on this machine (plain ray.init()
        # would join that one instead, with none of the resources asked for here).
        ray.init(address="local", num_cpus=embedded_cpus or local_cpus(scaling),
                 num_gpus=None if scaling.use_gpu else 0, include_dashboard=True, log_to_driver=True,
                 runtime_env=runtime_env)
        where = "embedded local Ray"
    shipped = f", shipping {code_dir} to its workers" if runtime_env and "working_dir" in runtime_env else ""
    if secrets := sorted(set(credentials) & set(SECRET_ENV)):
        shipped += f", handing {', '.join(secrets)} to its processes through Ray's internal store"
    try:
        check_capacity(scaling, ray.cluster_resources(), [n["Resources"] for n in ray.nodes() if n["Alive"]],
                       where=where, driver_cpus=float(env.get(DRIVER_CPUS_ENV, 0)))
        if address and storage_path:
            check_storage_is_shared(storage_path)
        yield where + shipped
    finally:
        ray.shutdown()


def job_runtime_env(*, code_dir: str | None, excludes: Sequence[str] = (),
                    credentials: Mapping[str, str]) -> dict | None:
    """The user's code directory, and the hook that gives every process of the job `credentials`."""
    runtime_env: dict = {}
    if credentials:
        runtime_env["worker_process_setup_hook"] = credentials_hook(credentials)
    if code_dir:
        runtime_env.update(working_dir=code_dir, excludes=[*CODE_EXCLUDES, *excludes])
    return runtime_env or None


def local_cpus(scaling: ScalingConfig) -> int:
    """Logical CPUs for an embedded Ray: the workers' plus Ray Data's share, at least the cores.

    Logical CPUs are scheduling slots, not cores, so asking for more than the machine has is safe
    and is what keeps the data pipeline from starving next to the workers.
    """
    return max(os.cpu_count() or 1, math.ceil(scaling.training_cpus + scaling.data_cpus))


def check_capacity(scaling: ScalingConfig, total: Mapping[str, float], nodes: list[Mapping[str, float]],
                   *, where: str, driver_cpus: float = 0) -> None:
    """Raises ClusterError when the cluster can never run the workers and still feed them data
    (next to a submitted job's driver, which holds `driver_cpus`)."""
    needed_cpus = scaling.training_cpus + scaling.data_cpus + driver_cpus
    have_cpus = total.get("CPU", 0)
    if needed_cpus > have_cpus:
        driver = f" + {driver_cpus:g} CPU for the job's driver" if driver_cpus else ""
        raise ClusterError(
            f"scaling needs {scaling.num_workers} workers x {scaling.cpus_per_worker:g} CPU + "
            f"{scaling.data_cpus:g} CPU for Ray Data{driver} = {needed_cpus:g} CPUs, but the {where} has "
            f"{have_cpus:g}. Lower scaling.num_workers or scaling.cpus_per_worker, or add nodes "
            "(without spare CPUs Ray Data's tasks never run and training hangs)"
        )
    if not any(node.get("CPU", 0) >= scaling.cpus_per_worker for node in nodes):
        raise ClusterError(f"scaling.cpus_per_worker: no node of the {where} has {scaling.cpus_per_worker:g} CPUs")
    if scaling.use_gpu:
        needed_gpus = scaling.num_workers * scaling.gpus_per_worker
        if needed_gpus > total.get("GPU", 0):
            raise ClusterError(
                f"scaling needs {scaling.num_workers} workers x {scaling.gpus_per_worker:g} GPU = "
                f"{needed_gpus:g} GPUs, but the {where} has {total.get('GPU', 0):g}. Lower "
                "scaling.num_workers, or set scaling.use_gpu: false"
            )


def _check_reachable(address: str) -> None:
    """A TCP probe, because `ray.init` keeps retrying an unreachable GCS for a long time."""
    if address == "auto" or "://" in address and not address.startswith("ray://"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address: expected host:port or ray://host:port (got {address!r})")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {error}") from None
