"""Kubernetes: KubeRay manifests rendered from the experiment (`rayjob`, `pods`), checked against
CRD schemas offline (`schemas`), and managed through the official client (`api`)."""
