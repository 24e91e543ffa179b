"""Planted secrets and the places they must never reach: an S3-compatible server that checks every
request's signature, and a search of every byte a run left behind."""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import boto3

ALLOW_ALL_S3 = json.dumps({"Version": "2012-10-17",
                           "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
USERS = ("storage", "data")
# moto answers this many requests without checking them (creating the users and their keys); from then
# on every request must be signed with a key pair it issued.
UNCHECKED_REQUESTS = 3 * len(USERS)


@dataclass(frozen=True)
class KeyPair:
    key_id: str
    secret: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret}

    def in_uri(self) -> str:
        """As a URI's user:password."""
        return f"{quote(self.key_id, safe='')}:{quote(self.secret, safe='')}"


@dataclass(frozen=True)
class AuthenticatedS3:
    """moto as its own process on loopback, with IAM checks on; a bucket `runs`."""

    endpoint: str  # host:port
    pairs: dict[str, KeyPair]
    process: subprocess.Popen

    @property
    def query(self) -> str:
        return f"endpoint_override={self.endpoint}&scheme=http"

    def client(self, pair: KeyPair | None):
        """A boto3 client signing with `pair`, or with a key pair the server never issued."""
        pair = pair or KeyPair("AKIAUNKNOWN0000000000", "not-a-key-the-server-issued")
        return boto3.client("s3", endpoint_url=f"http://{self.endpoint}", region_name="us-east-1",
                            aws_access_key_id=pair.key_id, aws_secret_access_key=pair.secret)

    def objects(self, prefix: str) -> dict[str, bytes]:
        s3 = self.client(self.pairs["storage"])
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="runs", Prefix=prefix)
        return {item["Key"]: s3.get_object(Bucket="runs", Key=item["Key"])["Body"].read()
                for page in pages for item in page.get("Contents", [])}


def start_authenticated_s3() -> AuthenticatedS3:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(UNCHECKED_REQUESTS)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.2)
    iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id="unchecked", aws_secret_access_key="unchecked")
    pairs = {}
    for user in USERS:
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=ALLOW_ALL_S3)
        issued = iam.create_access_key(UserName=user)["AccessKey"]
        pairs[user] = KeyPair(issued["AccessKeyId"], issued["SecretAccessKey"])
    server = AuthenticatedS3(f"127.0.0.1:{port}", pairs, process)
    server.client(pairs["storage"]).create_bucket(Bucket="runs")
    return server


def planted_wandb_key() -> str:
    return f"wandb-planted-{uuid.uuid4().hex}"


def secret_forms(s3: AuthenticatedS3, wandb_key: str) -> list[str]:
    """Every planted secret in each form a leak could take (a URI's password is quoted)."""
    forms = [wandb_key]
    for pair in s3.pairs.values():
        forms += [pair.key_id, pair.secret, quote(pair.secret, safe="")]
    return sorted(set(forms))


def files_under(*roots: Path) -> Iterable[tuple[str, bytes]]:
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    yield str(path), path.read_bytes()
                except OSError:  # a socket, or gone meanwhile
                    continue


def leaks(secrets: list[str], places: Iterable[tuple[str, bytes | str]]) -> list[str]:
    """`where: secret` for every secret found in every (where, content)."""
    found = []
    for where, content in places:
        data = content.encode() if isinstance(content, str) else content
        found += [f"{where}: {secret[:6]}..." for secret in secrets if secret.encode() in data]
    return found


STATE_LISTING = """
import sys
from ray.util import state
jobs = state.list_jobs(address=sys.argv[1], detail=True, limit=10_000)
print("jobs", jobs)
for job in jobs:  # the actors and tasks of rayspeed's own drivers (a whole test session holds too many)
    if "rayspeed" in (job.entrypoint or ""):
        mine = {"address": sys.argv[1], "filters": [("job_id", "=", job.job_id)], "detail": True, "limit": 10_000}
        print("actors", state.list_actors(**mine))
        print("tasks", state.list_tasks(**mine, raise_on_missing_output=False))  # each actor call is a task
"""


def ray_state(address: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """What Ray's state API shows of every job (runtime_env, entrypoint, metadata), actor and task: the
    dashboard's view. Read by a process of its own, with the cluster's auth token in `env`."""
    listing = subprocess.run([sys.executable, "-c", STATE_LISTING, address], env=env, capture_output=True,
                             text=True, timeout=120, check=True)
    assert listing.stdout.startswith("jobs [") and "\ntasks [" in listing.stdout, listing.stderr[-2000:]
    return [("state API", listing.stdout)]
