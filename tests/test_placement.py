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


def data_task_nodes(address: str, *, earlier_jobs: set[str]) -> dict[str, set[str]]:
    """Ray Data task name -> the nodes its tasks ran on, for the jobs that are not `earlier_jobs`
    (a driver job has no start time). Task events reach the state API a little late: asks until the
    tagging tasks show up."""
    deadline = time.monotonic() + 60
    while True:
        jobs = [job.job_id for job in list_jobs(address=address) if job.job_id not in earlier_jobs]
        nodes: dict[str, set[str]] = {}
        for job in jobs:
            for task in list_tasks(address=address, filters=[("job_id", "=", job)], limit=10000,
                                   raise_on_missing_output=False):
                if "MapBatches(" in task.name or task.name.startswith("Read"):
                    nodes.setdefault(task.name, set()).add(task.node_id)
        if any("tag_rows" in name for name in nodes) or time.monotonic() > deadline:
            return nodes
        time.sleep(1)


def test_preprocessing_runs_only_on_the_labelled_node(tmp_path, ray_cluster):
    earlier_jobs = {job.job_id for job in list_jobs(address=ray_cluster.address)}
    node = ray_cluster.add_node(num_cpus=2, labels=LABEL)
    try:
        config = experiment(tmp_path, run={"name": "placed"}, train={"epochs": 1}, tracking={"mode": "disabled"},
                            scaling={"data_node_labels": LABEL, "data_max_cpus": 2})
        summary = train(config, ray_cluster.address, wandb_mode="disabled")
        assert summary.final["val_accuracy"] > 0.5
        nodes = data_task_nodes(ray_cluster.address, earlier_jobs=earlier_jobs)
        assert any("tag_rows" in name for name in nodes), nodes  # statistics, encoding, the streamed train split
        assert all(ran == {node.node_id} for ran in nodes.values()), nodes
    finally:
        place_data_tasks(ScalingConfig())  # this process's DataContext outlives the run
        if ray.is_initialized():
            ray.shutdown()
        ray_cluster.remove_node(node)
