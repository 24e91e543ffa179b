"""Ray Data's tasks land on the nodes `scaling.data_node_labels` names: a second real node with a label
joins the session cluster, and Ray's state API says where every preprocessing task ran."""

import time

import pytest
import ray
from conftest import experiment, train
from ray.util.state import list_jobs, list_tasks

from rayspeed.config.scaling import ScalingConfig
from rayspeed.trainers.ingest import place_data_tasks

pytestmark = pytest.mark.ray
LABEL = {"rayspeed-test-role": "data"}


def data_task_nodes(address: str, *, since_ms: int) -> dict[str, set[str]]:
    """Ray Data task name -> the nodes its tasks ran on, for the jobs started since `since_ms` (task
    events arrive a little late)."""
    time.sleep(3)
    jobs = [job.job_id for job in list_jobs(address=address) if (job.start_time or 0) >= since_ms]
    assert jobs
    nodes: dict[str, set[str]] = {}
    tasks = [task for job in jobs for task in
             list_tasks(address=address, filters=[("job_id", "=", job)], limit=10000, raise_on_missing_output=False)]
    for task in tasks:
        if "MapBatches(" in task.name or task.name.startswith("Read"):
            nodes.setdefault(task.name, set()).add(task.node_id)
    return nodes


def test_preprocessing_runs_only_on_the_labelled_node(tmp_path, ray_cluster):
    node = ray_cluster.add_node(num_cpus=2, labels=LABEL)
    started_ms = int(time.time() * 1000)
    try:
        config = experiment(tmp_path, run={"name": "placed"}, train={"epochs": 1}, tracking={"mode": "disabled"},
                            scaling={"data_node_labels": LABEL, "data_max_cpus": 2})
        summary = train(config, ray_cluster.address, wandb_mode="disabled")
        assert summary.final["val_accuracy"] > 0.5
        nodes = data_task_nodes(ray_cluster.address, since_ms=started_ms)
        assert any("tag_rows" in name for name in nodes), nodes  # statistics, encoding, the streamed train split
        assert all(ran == {node.node_id} for ran in nodes.values()), nodes
    finally:
        place_data_tasks(ScalingConfig())  # this process's DataContext outlives the run
        if ray.is_initialized():
            ray.shutdown()
        ray_cluster.remove_node(node)
