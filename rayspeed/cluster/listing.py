"""Nodes and jobs as lines people read: `rayspeed cluster status`, `rayspeed jobs list|status`."""

import time

GIB = 1024**3


def node_lines(nodes: list) -> list[str]:
    """One line per node: role, address, state, and what it offers to training."""
    lines = []
    for node in nodes:
        total = node.resources_total or {}
        offers = [f"{total.get('CPU', 0):g} CPU"]
        if total.get("GPU"):
            offers.append(f"{total['GPU']:g} GPU")
        offers += [f"{total.get('memory', 0) / GIB:.1f} GiB memory",
                   f"{total.get('object_store_memory', 0) / GIB:.1f} GiB object store"]
        role = "head  " if node.is_head_node else "worker"
        lines.append(f"  {role} {node.node_ip:<15} {node.state:<6} {', '.join(offers)}  ({node.node_id[:12]})")
    return lines


def job_line(job) -> str:
    """Id, status, what it runs and when it started."""
    metadata = job.metadata or {}
    what = (f"{metadata['rayspeed_verb']} {metadata['rayspeed_run']}" if "rayspeed_run" in metadata
            else job.entrypoint[:60])
    return f"  {job.submission_id or job.job_id:<34} {str(job.status.value):<10} {what:<28} {_started(job)}"


def job_details(job) -> list[str]:
    lines = [job_line(job).strip(), f"  entrypoint: {job.entrypoint}"]
    if job.message:
        lines.append(f"  message: {job.message}")
    if job.end_time:
        lines.append(f"  ended: {_clock(job.end_time)}")
    for key, value in sorted((job.metadata or {}).items()):
        lines.append(f"  {key.removeprefix('rayspeed_')}: {value}")
    return lines


def _started(job) -> str:
    return f"started {_clock(job.start_time)}" if job.start_time else "not started"


def _clock(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_ms / 1000))
