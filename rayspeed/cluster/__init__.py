"""Where Ray runs: an embedded local Ray, an existing cluster, a submitted job, or a KubeRay RayJob.
Depends on `config` only. Importing the package imports no Ray: `k8s` rendering runs without it."""
