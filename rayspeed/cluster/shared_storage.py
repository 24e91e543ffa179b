"""Refuses run storage that the cluster's nodes cannot all see.

A local `run.storage_path` on a cluster of several machines puts each worker's checkpoint shards on
its own disk: the run looks fine until a resume finds half a checkpoint. Whether a path is shared
(NFS, a mounted bucket) cannot be told from the path, so the driver writes a marker there and a
tiny task on every node looks for it. On one machine every node sees it, as it should.
"""

import os
import uuid

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rayspeed.config.data import has_uri_scheme
from rayspeed.errors import ClusterError

PROBE_TIMEOUT_S = 60.0


def check_storage_is_shared(storage_path: str) -> None:
    """Raises ClusterError naming the nodes that cannot see a local `storage_path` (object storage passes)."""
    if has_uri_scheme(storage_path):
        return
    blind = nodes_not_seeing(os.path.abspath(os.path.expanduser(storage_path)))
    if blind:
        raise ClusterError(storage_problem(storage_path, blind))


def nodes_not_seeing(directory: str) -> list[str]:
    """Addresses of the alive nodes on which a marker written in `directory` by this process is missing."""
    os.makedirs(directory, exist_ok=True)
    marker = os.path.join(directory, f".rayspeed-shared-{uuid.uuid4().hex}")
    open(marker, "w").close()
    try:
        return sorted({address for address, seen in zip(*_probe_every_node(marker), strict=True) if not seen})
    finally:
        os.remove(marker)


def storage_problem(storage_path: str, blind: list[str]) -> str:
    return (f"run.storage_path: {storage_path!r} is not shared by the cluster's nodes: {', '.join(blind)} cannot "
            "see it, so their checkpoint shards would stay on their own disks. Use object storage "
            "(s3://bucket/runs) or a filesystem mounted at the same path on every node")


def _probe_every_node(marker: str) -> tuple[list[str], list[bool]]:
    nodes = [node for node in ray.nodes() if node["Alive"]]
    probes = [_exists.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
              .remote(marker) for node in nodes]
    try:
        seen = ray.get(probes, timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(f"checking run.storage_path on every node took over {PROBE_TIMEOUT_S:g} s") from None
    return [node["NodeManagerAddress"] for node in nodes], seen


@ray.remote(num_cpus=0)
def _exists(path: str) -> bool:
    return os.path.exists(path)
