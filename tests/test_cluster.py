"""Cluster checks: unreachable addresses and unsatisfiable scaling fail fast with a clear message."""

import pytest

from rayspeed.cluster.connection import check_capacity, connect, local_cpus
from rayspeed.cluster.shared_storage import nodes_not_seeing, storage_problem
from rayspeed.config.scaling import ScalingConfig
from rayspeed.errors import ClusterError


def test_workers_that_take_every_cpu_are_reported_as_starving_ray_data():
    scaling = ScalingConfig(num_workers=2, cpus_per_worker=1)
    with pytest.raises(ClusterError, match="= 3 CPUs, but the cluster has 2") as caught:
        check_capacity(scaling, {"CPU": 2}, [{"CPU": 2}], where="cluster")
    assert "Ray Data" in str(caught.value)


def test_embedded_ray_gets_cpus_for_workers_and_data():
    assert local_cpus(ScalingConfig(num_workers=2, cpus_per_worker=1, data_cpus=1)) >= 3
    assert local_cpus(ScalingConfig(num_workers=4, cpus_per_worker=2, data_cpus=2)) >= 10


def test_missing_gpus_and_oversized_workers_are_reported():
    with pytest.raises(ClusterError, match="GPUs"):
        check_capacity(ScalingConfig(num_workers=2, use_gpu=True), {"CPU": 8}, [{"CPU": 8}], where="cluster")
    with pytest.raises(ClusterError, match="cpus_per_worker"):
        check_capacity(ScalingConfig(num_workers=2, cpus_per_worker=4), {"CPU": 12},
                       [{"CPU": 3}] * 4, where="cluster")


@pytest.mark.timeout(60)  # Ray itself would keep retrying the address for minutes
def test_unreachable_address_fails_without_waiting_for_ray():
    with pytest.raises(ClusterError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        with connect(ScalingConfig(), address="127.0.0.1:1", env={}):
            pass


def test_scaling_the_real_cluster_cannot_hold_is_refused(ray_address):
    with pytest.raises(ClusterError, match="16 workers"):
        with connect(ScalingConfig(num_workers=16), address=ray_address, env={}):
            pass
    import ray

    assert not ray.is_initialized()  # disconnected again after the refusal


def test_a_submitted_jobs_driver_cpus_count_against_the_cluster():
    scaling = ScalingConfig(num_workers=2, cpus_per_worker=1)
    check_capacity(scaling, {"CPU": 4}, [{"CPU": 4}], where="cluster")
    with pytest.raises(ClusterError, match=r"\+ 1 CPU for the job's driver = 4 CPUs"):
        check_capacity(scaling, {"CPU": 3}, [{"CPU": 3}], where="cluster", driver_cpus=1)


def test_run_storage_is_checked_on_every_node_of_the_real_cluster(ray_session, tmp_path):
    assert nodes_not_seeing(str(tmp_path / "runs")) == []  # one machine: every node sees a local path
    assert not list((tmp_path / "runs").iterdir())  # the marker is gone again
    message = storage_problem("/data/runs", ["10.0.0.3", "10.0.0.4"])
    assert message.startswith("run.storage_path: '/data/runs' is not shared") and "10.0.0.3, 10.0.0.4" in message
    assert "s3://" in message
