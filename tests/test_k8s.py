"""Kubernetes, offline tier (always runs): every manifest under k8s/ and every rendered example is
valid against the KubeRay v1.7.0 CRD schemas (structure and CEL rules) and Kubernetes' own schemas,
carries no secret, and locks every container down. No API server here: see test_k8s_server.py."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k8s_support import KUSTOMIZATIONS, REPO, containers, crd_dir, kustomize, rayspeed_k8s

from rayspeed.cluster.k8s.rayjob import job_name, render_rayjob
from rayspeed.cluster.k8s.schemas import ManifestValidator
from rayspeed.config import load_config
from rayspeed.errors import ConfigError

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
SECRETS = {"WANDB_API_KEY": "wandb-key-7f3a9c", "AWS_ACCESS_KEY_ID": "AKIAPLANTED42",
           "AWS_SECRET_ACCESS_KEY": "aws-secret-planted-91"}


@pytest.fixture(scope="module")
def validator() -> ManifestValidator:
    return ManifestValidator.from_directory(crd_dir())


def kueue_overlay(tmp_path: Path) -> Path:
    """The gpu overlay with the Kueue component, as a user would combine them."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(REPO / "k8s/overlays/gpu", tmp_path)],
        "components": [os.path.relpath(REPO / "k8s/components/kueue", tmp_path)]}))
    return tmp_path


def all_kustomized(tmp_path: Path) -> dict[str, list[dict]]:
    found = {name: kustomize(REPO / "k8s" / name) for name in KUSTOMIZATIONS}
    found["overlays/gpu + components/kueue"] = kustomize(kueue_overlay(tmp_path))
    return found


def all_rendered() -> dict[str, list[dict]]:
    found = {}
    for example in EXAMPLES:
        cfg = load_config(example)
        verb = "tune" if cfg.tune else "train"
        found[f"{example.name} ({verb})"] = render_rayjob(cfg, verb=verb, source=str(example)).manifests
    return found


def test_every_kustomization_renders_and_validates(tmp_path, validator):
    """Base, the cpu and gpu overlays and the Kueue component, through `kubectl kustomize`."""
    for name, manifests in all_kustomized(tmp_path).items():
        kinds = sorted(m["kind"] for m in manifests)
        assert {"RayCluster", "RayJob", "ConfigMap", "PersistentVolumeClaim"} <= set(kinds), (name, kinds)
        for manifest in manifests:
            assert validator.errors(manifest) == [], (name, manifest["kind"])
    gpu = kustomize(REPO / "k8s/overlays/gpu")
    job = next(m for m in gpu if m["kind"] == "RayJob")
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert workers["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert workers["tolerations"][0]["key"] == "nvidia.com/gpu" and workers["nodeSelector"]
    queued = [m for m in kustomize(kueue_overlay(tmp_path)) if m["kind"] in ("RayJob", "RayCluster")]
    for manifest in queued:  # Kueue admits only clusters that do not autoscale
        cluster = manifest["spec"].get("rayClusterSpec", manifest["spec"])
        assert manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "rayspeed"
        assert cluster["enableInTreeAutoscaling"] is False and "autoscalerOptions" not in cluster


@pytest.mark.parametrize("overlay", ["base", "overlays/gpu"])
def test_the_kustomized_experiment_is_a_valid_experiment(overlay):
    config_map = next(m for m in kustomize(REPO / "k8s" / overlay) if m["kind"] == "ConfigMap")
    path = REPO / "k8s" / overlay / "experiment.yaml"
    assert config_map["data"]["experiment.yaml"] == path.read_text()
    cfg = load_config(path)
    assert cfg.run.storage_path == "/mnt/rayspeed-runs" and cfg.run.resume == "auto"  # the RayJob retries once


def test_every_example_renders_a_valid_rayjob_whose_experiment_loads_back(validator, tmp_path):
    for name, manifests in all_rendered().items():
        assert [m["kind"] for m in manifests] == ["ConfigMap", "RayJob"], name
        for manifest in manifests:
            assert validator.errors(manifest) == [], (name, manifest["kind"])
        config_map, job = manifests
        experiment = tmp_path / "experiment.yaml"
        experiment.write_text(config_map["data"]["experiment.yaml"])
        on_cluster = load_config(experiment)
        assert on_cluster.run.storage_path == "/mnt/rayspeed-runs"
        volumes = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"]
        assert {"name": "experiment", "configMap": {"name": config_map["metadata"]["name"]}} in volumes
        verb = "tune" if on_cluster.tune else "train"
        assert job["spec"]["entrypoint"].endswith(f" && python -m rayspeed {verb} /etc/rayspeed/experiment.yaml")


def test_render_takes_workers_and_resources_from_scaling():
    cfg = load_config(REPO / "examples/digits.yaml", [
        "scaling.num_workers=4", "scaling.cpus_per_worker=2", "scaling.data_cpus=4", "scaling.use_gpu=true",
        "train.precision=bf16", "k8s.max_worker_replicas=6", "k8s.node_selector={pool: a100}",
        "run.storage_path=s3://bucket/runs", "k8s.backoff_limit=2", "run.resume=auto", "tracking.mode=online"])
    config_map, job = render_rayjob(cfg, verb="train", source="digits.yaml").manifests
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert (group["groupName"], group["replicas"], group["minReplicas"], group["maxReplicas"]) == ("gpu", 4, 4, 6)
    pod = group["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "3", "memory": "8Gi", "nvidia.com/gpu": "1"}
    assert pod["nodeSelector"] == {"pool": "a100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] is True
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"] == {"num-cpus": "0"}
    # W&B runs in the head's driver (its key only there); storage credentials reach every pod.
    assert head["template"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "rayspeed-wandb", "optional": False}},  # tracking.mode online: required
        {"secretRef": {"name": "rayspeed-storage", "optional": True}}]
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "rayspeed-storage", "optional": True}}]
    mounted = [mount["name"] for mount in head["template"]["spec"]["containers"][0]["volumeMounts"]]
    assert "runs" not in mounted  # object storage: no runs volume
    assert yaml.safe_load(config_map["data"]["experiment.yaml"])["run"]["storage_path"] == "s3://bucket/runs"


def test_render_starts_the_job_in_the_image_project_and_names_it_as_kuberay_requires():
    cfg = load_config(REPO / "examples/lm.yaml", ["run.name=Moby_Dick.v2"])
    config_map, job = render_rayjob(cfg, verb="train", source="lm.yaml").manifests
    # Relative data (and tokenizer, and model module) paths are the image's project directory's.
    command = "python -m rayspeed train /etc/rayspeed/experiment.yaml"
    assert job["spec"]["entrypoint"] == f"cd /home/ray/rayspeed && {command}"
    assert yaml.safe_load(config_map["data"]["experiment.yaml"])["data"]["source"] == "examples/data/moby-dick"
    assert job["metadata"]["name"] == "moby-dick-v2" and config_map["metadata"]["name"] == "moby-dick-v2-experiment"
    assert job_name("7" + "x" * 80) == "rs-7" + "x" * 43


def test_render_sizes_a_sweep_for_its_concurrent_trials():
    """Each trial holds its driver actor's CPU, its workers' and Ray Data's, and the head holds none."""
    cfg = load_config(REPO / "examples/digits_sweep.yaml", [
        "scaling.cpus_per_worker=2", "scaling.data_cpus=2", "tune.max_concurrent_trials=2"])
    group = render_rayjob(cfg, verb="tune", source="x").manifests[1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    pod_cpus = int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    assert group["replicas"] == 2 * cfg.scaling.num_workers
    assert pod_cpus * cfg.scaling.num_workers >= cfg.scaling.trial_cpus  # 1 + 2 x 2 + 2 = 7 per trial
    single = render_rayjob(cfg, verb="train", source="x").manifests[1]["spec"]["rayClusterSpec"]
    assert single["workerGroupSpecs"][0]["replicas"] == cfg.scaling.num_workers  # `train` runs one


def test_render_keeps_what_kueue_and_kuberay_accept():
    queued = render_rayjob(load_config(REPO / "examples/digits.yaml", ["k8s.queue=team-a"]), verb="train",
                           source="x").manifests[1]
    assert queued["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert queued["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] is False
    assert "autoscalerOptions" not in queued["spec"]["rayClusterSpec"] and queued["spec"]["shutdownAfterJobFinishes"]
    for overrides, expected in [
            (["k8s.queue=q", "k8s.max_worker_replicas=3"], "k8s.max_worker_replicas: Kueue admits a fixed number"),
            (["k8s.queue=q", "k8s.shutdown_after_finished=false"], "k8s.shutdown_after_finished: Kueue requires true"),
            (["k8s.tolerations=[{key: gpu, value: a100}]"], "k8s.tolerations.0: operator Exists matches any value")]:
        with pytest.raises(ConfigError, match=expected):
            load_config(REPO / "examples/digits.yaml", overrides)
    kept = render_rayjob(load_config(REPO / "examples/digits.yaml", ["k8s.shutdown_after_finished=false"]),
                         verb="train", source="x").manifests[1]
    assert kept["spec"]["shutdownAfterJobFinishes"] is False and kept["spec"]["ttlSecondsAfterFinished"] == 0
    with pytest.raises(ConfigError, match=r"scaling.data_node_labels: no pod .* \{ray.io/node-group: gpu\}"):
        render_rayjob(load_config(REPO / "examples/digits.yaml", [
            "scaling.use_gpu=true", "train.precision=bf16", "scaling.data_node_labels={ray.io/node-group: cpu}"]),
            verb="train", source="x")


@pytest.mark.parametrize("storage, on_volume, kept", [
    ("~/rayspeed_runs", True, False), ("file:///data/runs", True, False),
    ("/mnt/rayspeed-runs/team-a", True, True), ("s3://bucket/runs", False, True)])
def test_render_stores_runs_where_every_pod_sees_them(storage, on_volume, kept):
    rendered_ = render_rayjob(load_config(REPO / "examples/digits.yaml", [f"run.storage_path={storage}"]),
                              verb="train", source="x")
    config_map, job = rendered_.manifests
    stored = yaml.safe_load(config_map["data"]["experiment.yaml"])["run"]["storage_path"]
    assert stored == (storage if kept else "/mnt/rayspeed-runs") and bool(rendered_.notes) == (not kept)
    for pod in [job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"],
                job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]]:
        volumes = [volume["name"] for volume in pod["volumes"]]
        assert ("runs" in volumes) == on_volume


def test_render_refuses_credentials_in_values_and_retries_without_resume():
    for planted, field in [("run.storage_path=s3://AKIA:pw@bucket/runs", "run.storage_path"),
                           ("data.source=s3://bucket/x.parquet?secret_key=abc", "data.source"),
                           ("deepspeed={comet: {api_key: planted-92}}", "deepspeed.comet.api_key")]:
        with pytest.raises(ConfigError, match=rf"^{field}: carries credentials.*Secret"):
            render_rayjob(load_config(REPO / "examples/digits.yaml", [planted]), verb="train", source="x")
    with pytest.raises(ConfigError, match=r"k8s.backoff_limit: 1 retries .* set run.resume: auto"):
        load_config(REPO / "examples/digits.yaml", ["k8s.backoff_limit=1"])
    with pytest.raises(ConfigError, match=r"k8s.max_worker_replicas: 1 pods cannot hold scaling.num_workers \(2\)"):
        load_config(REPO / "examples/digits.yaml", ["k8s.max_worker_replicas=1"])


def test_the_cli_renders_without_secrets_and_refuses_bad_flags_with_the_field():
    result = rayspeed_k8s("render", "examples/digits.yaml", "--image", "registry.example/rayspeed:1", "--namespace",
                          "ml", env=SECRETS)
    assert result.returncode == 0, result.stderr
    assert "run.storage_path '~/rayspeed_runs' would be one pod's own disk" in result.stderr
    assert not any(secret in result.stdout for secret in SECRETS.values())
    config_map, job = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert job["metadata"]["namespace"] == config_map["metadata"]["namespace"] == "ml"
    assert {c["image"] for c, _ in containers(job) if "image" in c} == {"registry.example/rayspeed:1"}
    refused = rayspeed_k8s("render", "examples/digits.yaml", "--namespace", "Bad_NS", env=SECRETS)
    assert refused.returncode == 2 and refused.stderr.startswith("rayspeed: examples/digits.yaml: k8s.namespace:")


def test_every_container_has_limits_and_runs_as_non_root(tmp_path):
    """Over all output: the kustomizations and every rendered example; the Secrets are only named."""
    everything = {**all_kustomized(tmp_path), **all_rendered()}
    checked = 0
    for name, manifests in everything.items():
        text = yaml.safe_dump_all(manifests)
        assert "kind: Secret" not in text and not any(secret in text for secret in SECRETS.values()), name
        for manifest in manifests:
            for container, pod_security in containers(manifest):
                where = (name, manifest["kind"], container["name"])
                limits, requests = container["resources"]["limits"], container["resources"]["requests"]
                assert {"cpu", "memory"} <= set(limits) and limits == requests, where
                security = {**pod_security, **container["securityContext"]}
                assert security["runAsNonRoot"] is True, where
                assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
                assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
                for source in container.get("envFrom", []):
                    assert set(source) == {"secretRef"}, where
                checked += 1
    assert checked >= 4 * (len(everything))  # head, worker, submitter and autoscaler at the least


def test_broken_manifests_fail_with_the_field_path(validator, tmp_path):
    job = render_rayjob(load_config(REPO / "examples/digits.yaml"), verb="train", source="x").manifests[1]
    cases = {
        "string replicas": (lambda m: m["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replicas="2"),
                            "spec.rayClusterSpec.workerGroupSpecs[0].replicas: '2' is not of type 'integer'"),
        "unknown field": (lambda m: m["spec"].update(bogus=1), "spec.bogus: unknown field 'bogus'"),
        "missing head template": (lambda m: m["spec"]["rayClusterSpec"]["headGroupSpec"].pop("template"),
                                  "spec.rayClusterSpec.headGroupSpec.template: Required value"),
        "CEL rule": (lambda m: m["spec"].update(managedBy="me"),
                     "spec.managedBy: Invalid value: the managedBy field value must be either"),
        "bad name": (lambda m: m["metadata"].update(name="Not_A_Name"), "metadata.name: 'Not_A_Name' does not match"),
    }
    for name, (breaks, expected) in cases.items():
        broken = copy.deepcopy(job)
        breaks(broken)
        errors = validator.errors(broken)
        assert any(error.startswith(expected) for error in errors), (name, errors)
        path = tmp_path / "broken.yaml"
        path.write_text(yaml.safe_dump(broken))
        result = rayspeed_k8s("validate", str(path), "--crds", str(crd_dir()))
        assert result.returncode == 1 and f"RayJob/{broken['metadata']['name']}: {expected}" in result.stdout, name
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"n": 3}}
    assert validator.errors(config_map) == ["data.n: 3 is not of type 'string', 'null'"]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}, "rules": []}
    assert validator.errors(role) == []  # a built-in kind of a named group
    no_crd = ManifestValidator().errors(job)
    assert no_crd == ["<root>: no schema for ray.io/v1 RayJob: not a built-in kind; give its CRD with --crds or "
                      "--from-cluster"]
    (tmp_path / "scalar.yaml").write_text("just text\n")
    result = rayspeed_k8s("validate", str(tmp_path / "scalar.yaml"))
    assert result.returncode == 1 and "scalar.yaml: document 1: <root>: apiVersion and kind" in result.stdout


def test_render_imports_neither_torch_nor_ray():
    probe = ("import sys\nfrom rayspeed.cli import main\nassert main(['k8s', 'render', 'examples/digits.yaml']) == 0\n"
             "loaded = [m for m in ('torch', 'ray', 'deepspeed', 'kubernetes') if m in sys.modules]\n"
             "print('LOADED', loaded, file=sys.stderr)\nassert not loaded, loaded\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and "LOADED []" in result.stderr, result.stderr


def test_an_unreachable_api_server_fails_in_seconds(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u", "namespace": "ml"}}]}))
    for args in (["status", "digits"], ["apply", "examples/digits.yaml", "--dry-run=server"]):
        result = rayspeed_k8s(*args, "--kubeconfig", str(kubeconfig))
        assert result.returncode == 2, result.stderr
        assert "cannot reach the Kubernetes API server at https://127.0.0.1:1" in result.stderr.splitlines()[-1]
    missing = rayspeed_k8s("status", "digits", env={"KUBECONFIG": str(tmp_path / "none")})
    assert missing.returncode == 2 and missing.stderr.startswith("rayspeed: no Kubernetes cluster configured")
