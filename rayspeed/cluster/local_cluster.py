"""A real multi-node Ray cluster on this machine (`ray start`: a head and N worker nodes), to try
cluster mode and job submission without a cloud.

Every node gets its own ports (several raylets on one host collide on Ray's fixed defaults) and
carries a marker in its environment that every process Ray starts for it inherits (raylets,
agents, workers, job drivers in their own sessions), so `down` stops exactly this cluster's
processes and leaves any other Ray on the machine alone. The cluster is described in a small
state file under the rayspeed home directory, which the job verbs read as their default address.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from rayspeed.errors import ClusterError

MARKER_ENV = "RAYSPEED_LOCAL_CLUSTER"
STATE_FILE = "local-cluster.json"
HOST = "127.0.0.1"
STOP_GRACE_S = 10.0
START_TIMEOUT_S = 120
OBJECT_STORE_FRACTION = 0.3
WORKER_PORTS = (10002, 19999)  # Ray's default range, shared out among the nodes


@dataclass(frozen=True)
class LocalCluster:
    """What `up` started, as recorded in the state file."""

    cluster_id: str
    gcs_address: str
    dashboard_url: str
    num_nodes: int
    cpus_per_node: int
    token_auth: bool
    temp_dir: str


def rayspeed_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("RAYSPEED_HOME") or Path.home() / ".rayspeed")


def read_state(env: Mapping[str, str]) -> LocalCluster | None:
    path = rayspeed_home(env) / STATE_FILE
    return LocalCluster(**json.loads(path.read_text())) if path.exists() else None


def start_local_cluster(*, workers: int, cpus_per_node: int, object_store_mib: int | None,
                        dashboard_port: int | None, env: Mapping[str, str]) -> LocalCluster:
    """Starts the head, then each worker node, and waits until every node has joined.

    Raises:
        ClusterError: a local cluster is already up, a port is taken, or a node did not start.
    """
    if (existing := read_state(env)) is not None and processes_of(existing.cluster_id):
        raise ClusterError(f"a local cluster is already up (dashboard {existing.dashboard_url}); "
                           "`rayspeed cluster down` stops it")
    cluster_id = uuid.uuid4().hex[:12]
    # Every process of every job inherits the nodes' environment: this shell's credentials become the
    # cluster's own, which submitted jobs use (a submission sends none).
    node_env = {**env, MARKER_ENV: cluster_id, "RAY_USAGE_STATS_ENABLED": "0"}
    token_auth = node_env.get("RAY_AUTH_MODE", "token").lower() == "token"
    if token_auth:
        node_env["RAY_AUTH_MODE"] = "token"
        _ensure_token(node_env)
    gcs_port = _free_port(preferred=6379)
    dashboard_port = dashboard_port or _free_port(preferred=8265)
    object_store_bytes = object_store_mib * 1024**2 if object_store_mib else _object_store_share(workers + 1)
    object_store = ["--object-store-memory", str(object_store_bytes)]
    common = ["--num-cpus", str(cpus_per_node), "--disable-usage-stats", *object_store]
    cluster = LocalCluster(cluster_id=cluster_id, gcs_address=f"{HOST}:{gcs_port}",
                           dashboard_url=f"http://{HOST}:{dashboard_port}", num_nodes=workers + 1,
                           cpus_per_node=cpus_per_node, token_auth=token_auth,
                           temp_dir=os.path.join(tempfile.gettempdir(), f"rayspeed-{cluster_id}"))
    state = rayspeed_home(env) / STATE_FILE
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(asdict(cluster), indent=2))  # written first: `down` can clean a half start
    try:
        _ray_start(["--head", "--node-ip-address", HOST, "--port", str(gcs_port), "--dashboard-host", HOST,
                    "--dashboard-port", str(dashboard_port), "--ray-client-server-port", str(_free_port()),
                    *common, *_node_ports(cluster, 0)], env=node_env)
        for node in range(1, workers + 1):
            _ray_start(["--address", cluster.gcs_address, "--node-ip-address", HOST, *common,
                        *_node_ports(cluster, node)], env=node_env)
        _wait_for_nodes(cluster, env=node_env)
    except BaseException as error:  # a half-started cluster is stopped, whatever interrupted it
        stop_local_cluster(env)
        if isinstance(error, subprocess.TimeoutExpired):
            raise ClusterError(f"the local cluster did not start within {START_TIMEOUT_S} s") from None
        raise
    return cluster


def stop_local_cluster(env: Mapping[str, str]) -> int:
    """Stops every process of the recorded cluster (SIGTERM, then SIGKILL) and forgets it.

    Returns:
        How many processes were running.
    """
    cluster = read_state(env)
    if cluster is None:
        return 0
    running = processes_of(cluster.cluster_id)
    for process in running:
        _signal(process, signal.SIGTERM)
    _, alive = psutil.wait_procs(running, timeout=STOP_GRACE_S)
    for process in alive + processes_of(cluster.cluster_id):  # also what started meanwhile
        _signal(process, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=STOP_GRACE_S)
    (rayspeed_home(env) / STATE_FILE).unlink(missing_ok=True)
    return len(running)


def processes_of(cluster_id: str) -> list[psutil.Process]:
    """Every live process that inherited the cluster's marker."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(MARKER_ENV) == cluster_id:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _signal(process: psutil.Process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except psutil.NoSuchProcess:
        pass


def _ray_start(arguments: list[str], *, env: Mapping[str, str]) -> None:
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", *arguments]
    result = subprocess.run(command, env=dict(env), capture_output=True, text=True, timeout=START_TIMEOUT_S)
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise ClusterError(f"`ray start {' '.join(arguments[:2])}` failed: {last[0][:300]}")


def _wait_for_nodes(cluster: LocalCluster, *, env: Mapping[str, str]) -> None:
    """`ray start` of a worker returns before its raylet registered: poll the node count."""
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
             "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        result = subprocess.run([sys.executable, "-c", probe, cluster.gcs_address], env=dict(env),
                                capture_output=True, text=True, timeout=START_TIMEOUT_S)
        alive = (result.stdout.split() or ["0"])[-1] if result.returncode == 0 else "0"
        if alive.isdigit() and int(alive) >= cluster.num_nodes:
            return
        time.sleep(1.0)
    raise ClusterError(f"the local cluster's {cluster.num_nodes} nodes did not all join within {START_TIMEOUT_S} s")


def _ensure_token(env: Mapping[str, str]) -> None:
    """Token authentication needs a token before the head starts; Ray's own command makes one
    (~/.ray/auth_token) unless RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH already gives it."""
    result = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"],
                            env=dict(env), capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ClusterError(f"cannot create a Ray auth token: {result.stderr.strip()[-300:]}")


def _node_ports(cluster: LocalCluster, node: int) -> list[str]:
    """What Ray would otherwise give every node on this host alike: ports, a share of the worker
    port range, and the temp dir (the nodes' runtime-env agents would unpack a job's working dir
    into one shared folder and delete it under each other's running processes)."""
    flags = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
    share = (WORKER_PORTS[1] - WORKER_PORTS[0] + 1) // cluster.num_nodes
    low = WORKER_PORTS[0] + node * share
    return [*(part for flag in flags for part in (flag, str(_free_port()))),
            "--min-worker-port", str(low), "--max-worker-port", str(low + share - 1),
            "--temp-dir", os.path.join(cluster.temp_dir, f"node{node}")]


def _object_store_share(num_nodes: int) -> int:
    """Ray's default object store (30% of memory) is per node: on one machine the nodes share it."""
    return int(psutil.virtual_memory().total * OBJECT_STORE_FRACTION / num_nodes)


def _free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free (the ports people know), else one the OS hands out."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise ClusterError("no free TCP port on this machine")
