"""RayJobs on a Kubernetes cluster through the official client: create (with server dry run and strict
field validation), status, the submitter's log, delete, and the cluster's CRDs. API server errors
become one ClusterError carrying the server's own message, which names the field path."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from rayspeed.errors import ClusterError

RAY_GROUP = "ray.io"
PLURALS = {"RayJob": "rayjobs", "RayCluster": "rayclusters", "RayService": "rayservices"}
REQUEST_TIMEOUT_S = (5, 60)  # (connect, read): an unreachable server fails in seconds, not minutes
# The Kubernetes Job controller's label on the pods of KubeRay's submitter Job.
SUBMITTER_LABEL = "job-name"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class RayJobStatus:
    """What KubeRay reports about a RayJob."""

    name: str
    namespace: str
    status: dict

    def lines(self) -> list[str]:
        status = self.status
        if not status.get("jobDeploymentStatus"):
            return [f"RayJob {self.namespace}/{self.name}",
                    "  jobDeploymentStatus: not reported yet (no KubeRay operator has seen this RayJob: is it "
                    "installed and watching this namespace?)"]
        shown = [("jobStatus", status.get("jobStatus") or "(not submitted yet)"),
                 ("jobDeploymentStatus", status["jobDeploymentStatus"]), ("reason", status.get("reason")),
                 ("message", status.get("message")), ("rayCluster", status.get("rayClusterName")),
                 ("dashboard", status.get("dashboardURL")), ("jobId", status.get("jobId")),
                 ("started", status.get("startTime")), ("ended", status.get("endTime")),
                 ("attempts failed", status.get("failed")), ("attempts succeeded", status.get("succeeded"))]
        return [f"RayJob {self.namespace}/{self.name}", *(f"  {key}: {value}" for key, value in shown
                                                          if value not in (None, ""))]


class KubeCluster:
    """One Kubernetes API server, reached with a kubeconfig (or, inside a pod, its service account)."""

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None):
        try:
            self.api = config.new_client_from_config(config_file=kubeconfig, context=context, persist_config=False)
            self.default_namespace = _context_namespace(kubeconfig, context)
        except (ConfigException, OSError) as error:
            if kubeconfig or context:
                raise ClusterError(f"kubeconfig: {error}") from None
            self.api = self._in_cluster(error)
            self.default_namespace = _pod_namespace()
        self.api.configuration.retries = 0
        self.server = self.api.configuration.host
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    @staticmethod
    def _in_cluster(error: Exception) -> client.ApiClient:
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            raise ClusterError(f"no Kubernetes cluster configured: {error} (set KUBECONFIG or --kubeconfig)") from None
        return client.ApiClient(configuration)

    def create(self, manifests: list[dict], *, dry_run: bool) -> list[str]:
        """Creates the ConfigMaps, then the RayJob (or RayCluster), then makes it their owner, so that
        deleting it deletes them too. Refused before anything is written when the RayJob exists; a
        RayJob the server refuses takes its ConfigMaps back out.

        Returns:
            one line per object, e.g. `rayjob.ray.io/digits created (server dry run)`.
        """
        config_maps, custom = _split(manifests)
        for manifest in custom:
            if self._call(_ref(manifest), lambda m=manifest: self._get(m), missing_ok=True) is not None:
                raise ClusterError(f"{_ref(manifest)} already exists: `rayspeed k8s delete "
                                   f"{manifest['metadata']['name']} -n {_namespace(manifest)}` first, or choose a "
                                   "new run.name")
        options = {"dry_run": "All" if dry_run else None, "field_validation": "Strict",
                   "_request_timeout": REQUEST_TIMEOUT_S}
        suffix = " (server dry run)" if dry_run else ""
        for manifest in config_maps:
            self._put_config_map(manifest, options)
        try:
            owners = [self._call(_ref(m), lambda m=m: self.custom.create_namespaced_custom_object(
                RAY_GROUP, m["apiVersion"].split("/")[1], _namespace(m), PLURALS[m["kind"]], m, **options))
                for m in custom]
        except ClusterError:
            for manifest in config_maps if not dry_run else []:
                self._call(_ref(manifest), lambda m=manifest: self.core.delete_namespaced_config_map(
                    m["metadata"]["name"], _namespace(m), _request_timeout=REQUEST_TIMEOUT_S), missing_ok=True)
            raise
        for manifest in config_maps if owners and not dry_run else []:
            self._call(_ref(manifest), lambda m=manifest: self.core.patch_namespaced_config_map(
                m["metadata"]["name"], _namespace(m), {"metadata": {"ownerReferences": [_owner(owners[0])]}},
                _request_timeout=REQUEST_TIMEOUT_S))
        return [f"{_ref(manifest)} created{suffix}" for manifest in [*config_maps, *custom]]

    def _get(self, manifest: dict) -> dict:
        return self.custom.get_namespaced_custom_object(
            RAY_GROUP, manifest["apiVersion"].split("/")[1], _namespace(manifest), PLURALS[manifest["kind"]],
            manifest["metadata"]["name"], _request_timeout=REQUEST_TIMEOUT_S)

    def _put_config_map(self, manifest: dict, options: dict) -> None:
        """Creates it, or replaces one of the same name (left while its deleted RayJob is collected)."""
        created = self._call(_ref(manifest), lambda: self.core.create_namespaced_config_map(
            _namespace(manifest), manifest, **options), conflict_ok=True)
        if created is None:
            self._call(_ref(manifest), lambda: self.core.replace_namespaced_config_map(
                manifest["metadata"]["name"], _namespace(manifest), manifest, **options))

    def status(self, name: str, *, namespace: str) -> RayJobStatus:
        found = self._call(f"rayjob.ray.io/{name}", lambda: self.custom.get_namespaced_custom_object(
            RAY_GROUP, "v1", namespace, "rayjobs", name, _request_timeout=REQUEST_TIMEOUT_S))
        return RayJobStatus(name=name, namespace=namespace, status=found.get("status") or {})

    def delete(self, kind: str, name: str, *, namespace: str) -> str:
        """Deletes a RayJob or RayCluster; Kubernetes' garbage collector removes what it owns."""
        self._call(f"{kind.lower()}.ray.io/{name}", lambda: self.custom.delete_namespaced_custom_object(
            RAY_GROUP, "v1", namespace, PLURALS[kind], name, propagation_policy="Background",
            _request_timeout=REQUEST_TIMEOUT_S))
        return f"{kind.lower()}.ray.io/{name} deleted"

    def submitter_log(self, name: str, *, namespace: str, follow: bool) -> Iterator[str]:
        """The log of the pod that submitted the RayJob's Ray job (`ray job submit` follows the
        job's own log, so this is the training's output)."""
        pods = self._call(f"pods of rayjob {name}", lambda: self.core.list_namespaced_pod(
            namespace, label_selector=f"{SUBMITTER_LABEL}={name}", _request_timeout=REQUEST_TIMEOUT_S)).items
        if not pods:
            state = self.status(name, namespace=namespace).status.get("jobDeploymentStatus") or "not reported"
            raise ClusterError(f"rayjob.ray.io/{name}: no submitter pod yet (jobDeploymentStatus: {state})")
        pod = max(pods, key=lambda p: p.metadata.creation_timestamp).metadata.name  # the newest attempt
        response = self._call(f"log of pod {pod}", lambda: self.core.read_namespaced_pod_log(
            pod, namespace, follow=follow, _preload_content=False,
            _request_timeout=(REQUEST_TIMEOUT_S[0], None) if follow else REQUEST_TIMEOUT_S))
        try:
            for chunk in response.stream(4096):
                yield chunk.decode(errors="replace")
        except HTTPError as error:
            raise ClusterError(f"log of pod {pod}: the stream from {self.server} broke off: {error}") from None

    def crds(self) -> list[dict]:
        """The cluster's CustomResourceDefinitions, as raw JSON (the schema's own field names)."""
        extensions = client.ApiextensionsV1Api(self.api)
        response = self._call("customresourcedefinitions", lambda: extensions.list_custom_resource_definition(
            _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))
        return json.loads(response.data)["items"]

    def _call(self, what: str, request: Callable, *, missing_ok: bool = False, conflict_ok: bool = False):
        """The request's result; None for a missing object (`missing_ok`) or an existing one (`conflict_ok`)."""
        try:
            return request()
        except client.ApiException as error:
            if (missing_ok and _reason(error) == "NotFound") or (conflict_ok and _reason(error) == "AlreadyExists"):
                return None
            raise self._refused(what, error) from None
        except HTTPError as error:
            raise self._unreachable(error) from None

    def _refused(self, what: str, error: client.ApiException) -> ClusterError:
        try:
            status = json.loads(error.body)
        except (TypeError, ValueError):
            status = None
        if not isinstance(status, dict) or "message" not in status:
            # Not a Kubernetes Status: the server has no such API at all (a bare CRD server has no core API).
            return ClusterError(f"{what}: the API server at {self.server} serves no API for it "
                                f"(HTTP {error.status} {error.reason}); is it a full Kubernetes API server?")
        return ClusterError(f"{what}: refused by the API server at {self.server} (HTTP {error.status} "
                            f"{status.get('reason', error.reason)}): {status['message']}")

    def _unreachable(self, error: Exception) -> ClusterError:
        return ClusterError(f"cannot reach the Kubernetes API server at {self.server}: {error}")


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return (chosen or {}).get("context", {}).get("namespace") or "default"


def _pod_namespace() -> str:
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as namespace:
            return namespace.read().strip() or "default"
    except OSError:
        return "default"


def _split(manifests: list) -> tuple[list[dict], list[dict]]:
    """(ConfigMaps, ray.io objects); anything else, or a document that is not an object, is refused."""
    config_maps, custom = [], []
    for i, manifest in enumerate(manifests):
        if not isinstance(manifest, dict) or not all(manifest.get(key) for key in ("apiVersion", "kind", "metadata")) \
                or not isinstance(manifest["metadata"], dict) or not manifest["metadata"].get("name"):
            raise ClusterError(f"document {i + 1}: not a Kubernetes object (apiVersion, kind and metadata.name)")
        if manifest["apiVersion"] == "v1" and manifest["kind"] == "ConfigMap":
            config_maps.append(manifest)
        elif manifest["apiVersion"].startswith(f"{RAY_GROUP}/") and manifest["kind"] in PLURALS:
            custom.append(manifest)
        else:
            raise ClusterError(f"{_ref(manifest)}: rayspeed creates RayJobs, RayClusters and their ConfigMaps; "
                               "use kubectl for other kinds")
    return config_maps, custom


def _owner(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "blockOwnerDeletion": False}


def _ref(manifest: dict) -> str:
    group = manifest["apiVersion"].split("/")[0] if "/" in manifest["apiVersion"] else ""
    return f"{manifest['kind'].lower()}{'.' + group if group else ''}/{manifest['metadata'].get('name')}"


def _namespace(manifest: dict) -> str:
    return manifest["metadata"].get("namespace") or "default"


def _reason(error: client.ApiException) -> str | None:
    try:
        return json.loads(error.body).get("reason")
    except (TypeError, ValueError, AttributeError):
        return None
