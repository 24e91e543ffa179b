"""Ray Jobs on any cluster through Ray's JobSubmissionClient: which cluster, with which auth token,
and errors people can act on (within seconds, instead of Ray's retries and tracebacks).

Ray 2.60 clusters turn token authentication on by default, and Ray's client only sends the token
when RAY_AUTH_MODE=token is set in the submitting shell; this client sends it whenever one is
found, in Ray's own order: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token.
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rayspeed.cluster.local_cluster import read_state
from rayspeed.cluster.submission import JobRequest
from rayspeed.errors import ClusterError

PROBE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 60.0
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")  # Ray's client would let these override ours
FINISHED = ("SUCCEEDED", "FAILED", "STOPPED")
# Ray's client logs every package upload and websocket close at INFO on the console.
RAY_CHATTER = ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk",
               "ray._private.runtime_env.packaging")


@dataclass(frozen=True)
class AuthToken:
    value: str
    source: str  # where it came from, for error messages (never the value)


def jobs_address(explicit: str | None, env: Mapping[str, str]) -> str:
    """--address, else an http(s) RAY_API_SERVER_ADDRESS or RAY_ADDRESS, else `rayspeed cluster up`'s."""
    if explicit:
        return explicit
    for key in ADDRESS_ENV:
        if env.get(key, "").startswith(("http://", "https://")):
            return env[key]
    if (local := read_state(env)) is not None:
        return local.dashboard_url
    raise ClusterError("no Ray cluster to talk to: pass --address http://HOST:8265 (its dashboard), set "
                       "RAY_API_SERVER_ADDRESS, or start one here with `rayspeed cluster up`")


def auth_token(env: Mapping[str, str], *, default_file: bool = True) -> AuthToken | None:
    """The token given explicitly, else (with `default_file`) the one in ~/.ray/auth_token."""
    if env.get("RAY_AUTH_TOKEN"):
        return AuthToken(env["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN")
    candidates = [("RAY_AUTH_TOKEN_PATH", env.get("RAY_AUTH_TOKEN_PATH"))]
    if default_file:
        candidates.append(("~/.ray/auth_token", str(Path(env.get("HOME", str(Path.home()))) / ".ray" / "auth_token")))
    for source, path in candidates:
        if path and os.path.isfile(path):
            try:
                value = Path(path).read_text().strip()
            except OSError as error:
                raise ClusterError(f"cannot read the Ray auth token in {path}: {error.strerror}") from None
            return AuthToken(value, f"{source} ({path})" if source[0] != "~" else source)
    return None


class JobsClient:
    """The Jobs API of one cluster; every failure is a ClusterError naming the cluster."""

    def __init__(self, address: str, *, env: Mapping[str, str]):
        self.url = _dashboard_url(address)
        # The machine's own token file goes only where Ray's client would send it (RAY_AUTH_MODE=token)
        # or to the cluster `rayspeed cluster up` started with it, not to any address given.
        local = read_state(env)
        self._token = auth_token(env, default_file=env.get("RAY_AUTH_MODE", "").lower() == "token"
                                 or (local is not None and local.dashboard_url == self.url))
        _check_reachable(self.url)
        from ray.job_submission import JobSubmissionClient

        for name in RAY_CHATTER:
            logging.getLogger(name).setLevel(logging.WARNING)
        self._headers = {"Authorization": f"Bearer {self._token.value}"} if self._token else {}
        with self._errors(), _without_env(ADDRESS_ENV):
            self._client = JobSubmissionClient(self.url, headers=self._headers or None)

    def nodes(self) -> list:
        """The cluster's nodes (Ray's state API), alive ones first."""
        from ray.util.state import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        with self._errors(), _without_env(ADDRESS_ENV):
            client = StateApiClient(self.url, headers={"Content-Type": "application/json", **self._headers})
            nodes = client.list(StateResource.NODES, options=ListApiOptions(detail=True),
                                raise_on_missing_output=False)
        return sorted(nodes, key=lambda node: (node.state != "ALIVE", not node.is_head_node, node.node_id))

    def submit(self, request: JobRequest) -> str:
        with self._errors():
            return self._client.submit_job(
                entrypoint=request.entrypoint, runtime_env=request.runtime_env, metadata=request.metadata,
                submission_id=request.submission_id, entrypoint_num_cpus=request.entrypoint_num_cpus,
                entrypoint_resources=request.entrypoint_resources)

    def list(self) -> list:
        with self._errors():
            jobs = [job for job in self._client.list_jobs() if job.submission_id]  # not attached drivers
        return sorted(jobs, key=lambda job: job.start_time or 0)

    def info(self, job_id: str):
        with self._errors():
            return self._client.get_job_info(job_id)

    def status(self, job_id: str) -> str:
        with self._errors():
            return str(self._client.get_job_status(job_id).value)

    def logs(self, job_id: str) -> str:
        with self._errors():
            return self._client.get_job_logs(job_id)

    def follow(self, job_id: str, write: Callable[[str], None]) -> str:
        """Streams the job's log until it ends; returns its final status."""
        async def tail() -> None:
            async for chunk in self._client.tail_job_logs(job_id):
                write(chunk)

        with self._errors():
            self.status(job_id)  # an unknown id fails here, not inside the stream
            asyncio.run(tail())
            return self.wait(job_id, timeout_s=STOP_TIMEOUT_S)

    def stop(self, job_id: str) -> str:
        """Asks Ray to stop the job (SIGTERM to its driver, SIGKILL after Ray's grace period) and
        waits for it to end; returns its final status."""
        with self._errors():
            self._client.stop_job(job_id)
            env = (self._client.get_job_info(job_id).runtime_env or {}).get("env_vars") or {}
        # The driver checkpoints and closes its run within the job's own stop wait before Ray kills it.
        return self.wait(job_id, timeout_s=float(env.get("RAY_JOB_STOP_WAIT_TIME_S", 0)) + STOP_TIMEOUT_S)

    def wait(self, job_id: str, *, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while (status := self.status(job_id)) not in FINISHED:
            if time.monotonic() > deadline:
                raise ClusterError(f"job {job_id} is still {status} after {timeout_s:g} s")
            time.sleep(0.5)
        return status

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from ray.exceptions import AuthenticationError

        try:
            yield
        except AuthenticationError as error:
            raise ClusterError(self._auth_problem(str(error))) from None
        except (ConnectionError, OSError) as error:
            raise ClusterError(f"cannot talk to the Ray cluster at {self.url}: {_first_line(error)}") from None
        except (RuntimeError, ValueError) as error:  # "Request failed with status code 404", a package too big
            raise ClusterError(f"the Ray cluster at {self.url} answered: {_first_line(error)}") from None

    def _auth_problem(self, message: str) -> str:
        if self._token is None:
            return (f"the Ray cluster at {self.url} requires an auth token and none was found: set RAY_AUTH_TOKEN "
                    "or RAY_AUTH_TOKEN_PATH, or put it in ~/.ray/auth_token (`ray get-auth-token` on the head "
                    "prints it)")
        return f"the Ray cluster at {self.url} refused the auth token from {self._token.source}: {_first_line(message)}"


def _dashboard_url(address: str) -> str:
    url = address if "://" in address else f"http://{address}"
    parts = urlsplit(url)
    try:
        valid_port = parts.port is None or parts.port > 0
    except ValueError:
        valid_port = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not valid_port:
        raise ClusterError(f"--address: expected the cluster's dashboard as http://HOST:PORT (port 8265 by "
                           f"default), got {address!r}")
    return url.rstrip("/")


def _check_reachable(url: str) -> None:
    """A TCP probe first: Ray's client has no connect timeout, and a dropped SYN hangs for minutes."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise ClusterError(f"cannot reach the Ray dashboard at {url}: {error}") from None


@contextlib.contextmanager
def _without_env(keys: tuple[str, ...]) -> Iterator[None]:
    saved = {key: os.environ.pop(key) for key in keys if key in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _first_line(error: object) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__
