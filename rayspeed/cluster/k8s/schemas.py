"""Offline validation of manifests, as close to the API server as a file check gets: custom resources
against their CRD's structural schema (unknown fields refused, as with strict field validation) plus
its create-time CEL rules; built-in kinds against Kubernetes' own schemas (kubernetes-validate).
Messages name the field path the way the API server does."""

import copy
import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

import celpy
import jsonschema
import kubernetes_validate
import yaml

from rayspeed.config.k8s import DNS_LABEL, DNS_SUBDOMAIN
from rayspeed.errors import ConfigError

# ObjectMeta as the API server reads it: what a manifest may set, and what `get -o yaml` adds.
OBJECT_META = {"type": "object", "additionalProperties": False, "properties": {
    "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
    "generateName": {"type": "string"},
    "namespace": {"type": "string", "maxLength": 63, "pattern": DNS_LABEL},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    **{name: {} for name in ("ownerReferences", "finalizers", "uid", "resourceVersion", "generation",
                             "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                             "managedFields", "selfLink")}}}


def _structural_to_json_schema(node):
    """A CRD's structural schema as JSON Schema: Kubernetes extensions turned into plain keywords."""
    if isinstance(node, list):
        return [_structural_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _structural_to_json_schema(value) for key, value in node.items()
              if not key.startswith("x-kubernetes-") and key != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    if node.get("x-kubernetes-embedded-resource"):
        schema.setdefault("properties", {}).update(
            {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
    preserves = node.get("x-kubernetes-preserve-unknown-fields", False)
    if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema \
            and not preserves:
        schema["additionalProperties"] = False  # what strict field validation refuses
    return schema


class CustomResourceSchema:
    """One served version of one CRD: its JSON Schema and its create-time CEL rules."""

    def __init__(self, *, api_version: str, kind: str, structural: dict):
        self.api_version, self.kind, self.structural = api_version, kind, structural

    @functools.cached_property
    def _validator(self) -> jsonschema.Draft7Validator:
        schema = _structural_to_json_schema(copy.deepcopy(self.structural))
        schema.setdefault("properties", {}).update(
            {"apiVersion": {"const": self.api_version}, "kind": {"const": self.kind}, "metadata": OBJECT_META})
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        return jsonschema.Draft7Validator(schema)

    def errors(self, manifest: dict) -> list[str]:
        """Structural errors first; like the server, CEL rules run only on a structurally valid object."""
        found = [line for error in self._validator.iter_errors(manifest) for line in _describe(error)]
        return found or list(_cel_violations(self.structural, manifest, path=""))


def _describe(error: jsonschema.ValidationError) -> list[str]:
    where = _field_path(error.absolute_path)
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        return [f"{_join(where, key)}: unknown field {key!r}" for key in error.instance if key not in known]
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return [f"{_join(where, missing)}: Required value"]
    return [f"{where or '<root>'}: {error.message}"]


def _field_path(parts: Iterable) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _cel_violations(schema: dict, value, *, path: str) -> Iterator[str]:
    """Create-time `x-kubernetes-validations` rules (those not comparing with oldSelf), evaluated with
    cel-python on the value they are attached to."""
    if not isinstance(schema, dict) or value is None:
        return
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" not in rule["rule"] and not _cel_holds(rule["rule"], value):
            yield f"{path or '<root>'}: Invalid value: {rule.get('message', rule['rule'])}"
    if isinstance(value, dict):
        for key, item in value.items():
            child = (schema.get("properties") or {}).get(key, schema.get("additionalProperties"))
            yield from _cel_violations(child, item, path=_join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _cel_violations(schema["items"], item, path=f"{path}[{i}]")


def _cel_holds(rule: str, value) -> bool:
    return bool(_cel_program(rule).evaluate({"self": celpy.json_to_cel(value)}))


@functools.cache
def _cel_program(rule: str):
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


class ManifestValidator:
    """Validates manifests of built-in kinds and of the custom resources whose CRDs it was given."""

    def __init__(self, crds: Iterable[dict] = ()):
        self.custom: dict[tuple[str, str], CustomResourceSchema] = {}
        for crd in crds:
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    api_version = f"{group}/{version['name']}"
                    self.custom[api_version, kind] = CustomResourceSchema(
                        api_version=api_version, kind=kind, structural=version["schema"]["openAPIV3Schema"])

    @classmethod
    def from_directory(cls, directory: str | Path) -> "ManifestValidator":
        """CRDs from the YAML files of a directory (e.g. KubeRay's ray.io_rayjobs.yaml)."""
        files = sorted(Path(directory).glob("*.y*ml")) if Path(directory).is_dir() else []
        crds = [doc for file in files for doc in load_documents(file) if doc.get("kind") == "CustomResourceDefinition"]
        if not crds:
            raise ConfigError(f"--crds: no CustomResourceDefinition in {directory} (expected KubeRay's "
                              "ray.io_rayjobs.yaml and ray.io_rayclusters.yaml)")
        return cls(crds)

    def errors(self, manifest: dict) -> list[str]:
        """What the API server would refuse in `manifest`, one line per problem with its field path."""
        if not isinstance(manifest, dict) or not manifest.get("apiVersion") or not manifest.get("kind"):
            return ["<root>: apiVersion and kind: Required value"]
        key = (manifest["apiVersion"], manifest["kind"])
        if key in self.custom:
            return self.custom[key].errors(manifest)
        return _builtin_errors(manifest)


def _builtin_errors(manifest: dict) -> list[str]:
    try:
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"<root>: no schema for {manifest['apiVersion']} {manifest['kind']}: not a built-in kind; give "
                "its CRD with --crds or --from-cluster"]
    except kubernetes_validate.ValidationError as error:
        return _describe(error)
    return []


def load_documents(path: str | Path) -> list[dict]:
    """The YAML (or JSON) documents of a file; empty documents are skipped."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are a megabyte each
        return [doc for doc in yaml.load_all(text, Loader=loader) if doc]
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
