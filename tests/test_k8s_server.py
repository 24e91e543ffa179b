"""Kubernetes, server tier: a real API server for CRDs (k8s.io/apiextensions-apiserver, the half of
kube-apiserver that serves custom resources) with etcd on loopback and the KubeRay v1.7.0 CRDs
installed. `rayspeed k8s apply|status|delete|validate` run against it for real. It has no core API
(no ConfigMaps, no pods) and no KubeRay operator: these tests say where that limits them.

The server is built once from Debian's Go sources by ../shared/k8s/build-apiextensions-apiserver.sh
(about 5 minutes) and cached in ~/.cache/rayspeed/k8s-apiserver. If it cannot be built or etcd is
missing, every test here is skipped with the reason; none passes without the server.
"""

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from k8s_support import KUSTOMIZATIONS, REPO, crd_dir, kustomize, rayspeed_k8s, shared_k8s

from rayspeed.cluster.k8s.schemas import ManifestValidator

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1800)]  # the first test may build the server
CACHE = Path(os.environ.get("RAYSPEED_K8S_SERVER_CACHE", Path.home() / ".cache/rayspeed/k8s-apiserver"))
BINARY = "apiextensions-apiserver"


def _server_binary() -> Path:
    """The cached server, built on first use; a failed build skips this tier with the log's tail."""
    if (CACHE / BINARY).is_file() and (CACHE / f"{BINARY}.version").is_file():
        return CACHE
    log = CACHE.parent / "k8s-apiserver-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"building {BINARY} into {CACHE} (about 5 minutes; log: {log})", file=sys.stderr)
    with open(log, "w") as out:
        built = subprocess.run(["bash", str(shared_k8s() / "build-apiextensions-apiserver.sh"), str(CACHE)],
                               stdout=out, stderr=subprocess.STDOUT, timeout=1500)
    if built.returncode != 0 or not (CACHE / BINARY).is_file():
        tail = log.read_text()[-1500:]
        pytest.skip(f"SERVER TIER NOT RUN: {BINARY} could not be built here (exit {built.returncode}): {tail}")
    return CACHE


def _free_ports() -> int:
    """A port for the API server whose etcd ports (the script's +7000 and +7001) are free too."""
    for port in range(21000, 29000, 37):
        try:
            for candidate in (port, port + 7000, port + 7001):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    pytest.fail("no free loopback ports for the API server and etcd")


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory) -> str:
    """A running API server with the KubeRay CRDs established; its kubeconfig path."""
    if shutil.which("etcd") is None:
        pytest.skip("SERVER TIER NOT RUN: etcd is not installed (apt-get install etcd-server; .ci/run does)")
    binary = _server_binary()
    run = tmp_path_factory.mktemp("apiserver")
    port = _free_ports()
    started = subprocess.run(["bash", str(shared_k8s() / "start-crd-apiserver.sh"), str(binary), str(run), str(port)],
                             capture_output=True, text=True, timeout=120)
    try:
        assert "(http 200)" in started.stdout, started.stdout + started.stderr + (run / "apiserver.log").read_text()
        _install_crds(str(run / "kubeconfig"))
        yield str(run / "kubeconfig")
    finally:
        for pid_file in ("apiserver.pid", "etcd.pid"):
            if (run / pid_file).is_file():
                subprocess.run(["kill", (run / pid_file).read_text().strip()], check=False)


def _install_crds(kubeconfig: str) -> None:
    from kubernetes import client, config

    api = client.ApiextensionsV1Api(config.new_client_from_config(config_file=kubeconfig))
    names = []
    for path in sorted(crd_dir().glob("ray.io_*.yaml")):
        crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        api.create_custom_resource_definition(crd, _preload_content=False)
        names.append(crd["metadata"]["name"])
    # Established first, then the custom resources' endpoints answer (a moment later).
    custom = client.CustomObjectsApi(api.api_client)
    deadline = time.monotonic() + 60
    for name in names:
        plural, group = name.split(".", 1)
        while True:
            try:
                custom.list_namespaced_custom_object(group, "v1", "default", plural)
                break
            except client.ApiException as error:
                assert time.monotonic() < deadline, f"{name} is not served: {error.status} {error.reason}"
                time.sleep(0.2)


def k8s(kubeconfig: str, *args: str) -> subprocess.CompletedProcess:
    return rayspeed_k8s(*args, env={"KUBECONFIG": kubeconfig})


def rendered_rayjob(tmp_path: Path, *overrides: str) -> tuple[Path, dict]:
    result = rayspeed_k8s("render", "examples/digits.yaml", *overrides)
    assert result.returncode == 0, result.stderr
    job = next(doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "RayJob")
    path = tmp_path / "rayjob.yaml"
    path.write_text(yaml.safe_dump(job))
    return path, job


def test_rendered_rayjob_is_accepted_with_strict_validation_and_a_wrong_field_is_refused(kubeconfig, tmp_path):
    path, job = rendered_rayjob(tmp_path)
    accepted = k8s(kubeconfig, "apply", "-f", str(path), "--dry-run=server")
    assert accepted.returncode == 0 and accepted.stdout == "rayjob.ray.io/digits created (server dry run)\n", (
        accepted.stdout + accepted.stderr)
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicaz"] = 2
    path.write_text(yaml.safe_dump(job))
    refused = k8s(kubeconfig, "apply", "-f", str(path), "--dry-run=server")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"rayspeed: rayjob.ray.io/digits: refused by the API server at {_server(kubeconfig)} (HTTP 400 BadRequest): "
        'RayJob in version "v1" cannot be handled as a RayJob: strict decoding error: unknown field '
        '"spec.rayClusterSpec.workerGroupSpecs[0].replicaz"')
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("replicaz")
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "two"
    path.write_text(yaml.safe_dump(job))
    refused = k8s(kubeconfig, "apply", "-f", str(path))
    assert refused.returncode == 2 and "spec.rayClusterSpec.workerGroupSpecs[0].replicas" in refused.stderr
    assert "Invalid value" in refused.stderr or "cannot be handled" in refused.stderr


def test_apply_status_delete_round_trip(kubeconfig, tmp_path):
    path, _ = rendered_rayjob(tmp_path, "run.name=round-trip")
    created = k8s(kubeconfig, "apply", "-f", str(path))
    assert created.returncode == 0 and created.stdout.startswith("rayjob.ray.io/round-trip created\n"), created.stderr
    again = k8s(kubeconfig, "apply", "-f", str(path))
    assert again.returncode == 2 and "rayjob.ray.io/round-trip already exists" in again.stderr
    waiting = k8s(kubeconfig, "status", "round-trip")
    assert waiting.returncode == 0 and "jobDeploymentStatus: not reported yet" in waiting.stdout
    _report_as_the_operator(kubeconfig, "round-trip", {
        "jobStatus": "RUNNING", "jobDeploymentStatus": "Running", "rayClusterName": "round-trip-x7k2p",
        "dashboardURL": "round-trip-x7k2p-head-svc.default.svc.cluster.local:8265"})
    running = k8s(kubeconfig, "status", "round-trip")
    assert running.returncode == 0
    assert running.stdout.splitlines()[:4] == ["RayJob default/round-trip", "  jobStatus: RUNNING",
                                               "  jobDeploymentStatus: Running", "  rayCluster: round-trip-x7k2p"]
    logs = k8s(kubeconfig, "logs", "round-trip")  # the submitter pod's log: this server has no pods
    assert logs.returncode == 2 and "pods of rayjob round-trip: the API server at" in logs.stderr
    deleted = k8s(kubeconfig, "delete", "round-trip")
    assert deleted.returncode == 0 and deleted.stdout == "rayjob.ray.io/round-trip deleted\n"
    gone = k8s(kubeconfig, "status", "round-trip")
    assert gone.returncode == 2 and 'rayjobs.ray.io "round-trip" not found' in gone.stderr


def _report_as_the_operator(kubeconfig: str, name: str, status: dict) -> None:
    """No KubeRay operator runs here: write the status subresource the way it would."""
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    api.patch_namespaced_custom_object_status("ray.io", "v1", "default", "rayjobs", name, {"status": status})


def test_a_whole_rendering_is_refused_before_its_rayjob_when_the_configmap_cannot_be_made(kubeconfig):
    """This server has no core API, so the experiment's ConfigMap (created first) is refused: no
    RayJob is created, and the message says what the server said."""
    result = k8s(kubeconfig, "apply", "examples/digits.yaml", "run.name=whole")
    assert result.returncode == 2
    assert "configmap/whole-experiment: the API server at" in result.stderr and "serves no API for it" in result.stderr
    assert k8s(kubeconfig, "status", "whole").returncode == 2  # no RayJob without its experiment


def test_kustomized_ray_objects_are_accepted_by_the_server(kubeconfig, tmp_path):
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    checked = 0
    for name in KUSTOMIZATIONS:
        for manifest in kustomize(REPO / "k8s" / name):
            if manifest["apiVersion"].startswith("ray.io/"):
                plural = {"RayJob": "rayjobs", "RayCluster": "rayclusters"}[manifest["kind"]]
                namespace = manifest["metadata"].get("namespace", "default")
                api.create_namespaced_custom_object("ray.io", "v1", namespace, plural, manifest, dry_run="All",
                                                    field_validation="Strict")
                checked += 1
    assert checked == 2 * len(KUSTOMIZATIONS)


def test_offline_validation_agrees_with_the_server(kubeconfig, tmp_path):
    """The same broken RayJobs, refused by both; the valid one accepted by both. Also checks that
    `k8s validate --from-cluster` reads the CRDs from the server."""
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    offline = ManifestValidator.from_directory(crd_dir())
    _, job = rendered_rayjob(tmp_path, "run.name=agree")
    variants = {"valid": job}
    for name, field, value in [("string replicas", "replicas", "2"), ("unknown field", "bogus", 1),
                               ("number in a map of strings", "rayStartParams", {"num-cpus": 2})]:
        broken = copy.deepcopy(job)
        broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0][field] = value
        variants[name] = broken
    variants["CEL rule"] = {**job, "spec": {**job["spec"], "managedBy": "someone-else"}}
    variants["no head template"] = copy.deepcopy(job)
    variants["no head template"]["spec"]["rayClusterSpec"]["headGroupSpec"].pop("template")
    for name, manifest in variants.items():
        try:
            api.create_namespaced_custom_object("ray.io", "v1", "default", "rayjobs", manifest, dry_run="All",
                                                field_validation="Strict")
            server_accepts = True
        except client.ApiException:
            server_accepts = False
        assert server_accepts == (offline.errors(manifest) == []) == (name == "valid"), name
    path = tmp_path / "variants.yaml"
    path.write_text(yaml.safe_dump_all(list(variants.values())))
    result = k8s(kubeconfig, "validate", "--from-cluster", str(path))
    assert result.returncode == 1 and result.stdout.count(": valid\n") == 1, result.stdout + result.stderr


def _server(kubeconfig: str) -> str:
    return yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
