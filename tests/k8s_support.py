"""What both Kubernetes test tiers use: the KubeRay v1.7.0 CRDs of ../shared/k8s (never copied into
this tree), `kubectl kustomize`, and a walk over every container of a manifest."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KUSTOMIZATIONS = ["base", "overlays/cpu", "overlays/gpu"]


def shared_k8s() -> Path:
    """../shared/k8s beside this checkout (or $RAYSPEED_SHARED_K8S). Both tiers need it; without it they
    are skipped with that reason in the log, never passed."""
    candidates = [os.environ.get("RAYSPEED_SHARED_K8S"), REPO.parent / "shared" / "k8s", "/work/shared/k8s"]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "kuberay-v1.7.0" / "ray.io_rayjobs.yaml").is_file():
            return Path(candidate)
    pytest.skip(f"K8S TESTS NOT RUN: the KubeRay CRDs (../shared/k8s) are not in any of {candidates[1:]}; "
                "set RAYSPEED_SHARED_K8S")


def crd_dir() -> Path:
    return shared_k8s() / "kuberay-v1.7.0"


def kustomize(directory: Path) -> list[dict]:
    result = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rayspeed_k8s(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`rayspeed k8s ...` in a fresh process from the repository root, running this checkout's code."""
    return subprocess.run([sys.executable, "-m", "rayspeed", "k8s", *args], capture_output=True, text=True,
                          timeout=180, cwd=REPO, env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)})


def pod_specs(manifest: dict) -> list[dict]:
    """Every pod spec of a RayCluster or RayJob: head, worker groups and the job's submitter."""
    spec = manifest.get("spec", {})
    cluster = spec.get("rayClusterSpec", spec) if manifest["kind"] in ("RayJob", "RayCluster") else {}
    templates = [cluster.get("headGroupSpec", {}).get("template"),
                 *(group["template"] for group in cluster.get("workerGroupSpecs", [])),
                 spec.get("submitterPodTemplate")]
    return [template["spec"] for template in templates if template]


def containers(manifest: dict) -> list[tuple[dict, dict]]:
    """(container, its pod's securityContext) pairs, the autoscaler sidecar's included."""
    pairs = [(container, pod.get("securityContext", {})) for pod in pod_specs(manifest)
             for container in [*pod.get("initContainers", []), *pod["containers"]]]
    cluster = manifest.get("spec", {}).get("rayClusterSpec", manifest.get("spec", {}))
    if manifest["kind"] in ("RayJob", "RayCluster") and cluster.get("enableInTreeAutoscaling"):
        pairs.append(({"name": "autoscaler", **cluster.get("autoscalerOptions", {})}, {}))
    return pairs
