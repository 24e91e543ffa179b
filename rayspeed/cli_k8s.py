"""`rayspeed k8s ...`: render an experiment as a KubeRay RayJob, create it, follow it, delete it, and
validate manifests offline. Thin, like cli.py; none of these verbs imports Ray or torch."""

import argparse
import importlib
import sys

from rayspeed.cli_arguments import config_arguments
from rayspeed.config import load_config
from rayspeed.errors import ConfigError


def add_k8s_parser(verbs) -> None:
    k8s = verbs.add_parser("k8s", help="run the experiment on Kubernetes as a KubeRay RayJob").add_subparsers(
        required=True, metavar="ACTION")
    render = k8s.add_parser("render", help="print the RayJob and the ConfigMap holding the experiment (YAML)")
    _experiment_arguments(render, config_required=True)
    render.set_defaults(command=_render)

    apply = k8s.add_parser("apply", help="render the experiment (or read -f FILE) and create it on the cluster")
    _experiment_arguments(apply, config_required=False)
    apply.add_argument("-f", "--filename", help="manifests to create instead (e.g. edited `k8s render` output)")
    apply.add_argument("--dry-run", choices=["none", "server"], default="none",
                       help="server: the API server validates and defaults everything but stores nothing")
    _kubeconfig_arguments(apply)
    apply.set_defaults(command=_apply)

    for action, text in (("status", "the RayJob's jobStatus and jobDeploymentStatus"),
                         ("logs", "the job's log (from the pod KubeRay submits it with)"),
                         ("delete", "delete the RayJob; its Ray cluster and ConfigMap go with it")):
        parser = k8s.add_parser(action, help=text)
        parser.add_argument("name", help="the RayJob's name (printed by `rayspeed k8s apply`)")
        parser.add_argument("-n", "--namespace", help="default: the kubeconfig context's, else 'default'")
        if action == "logs":
            parser.add_argument("--follow", action="store_true", help="stream the log until the job ends")
        if action == "delete":
            parser.add_argument("--kind", choices=["RayJob", "RayCluster"], default="RayJob")
        _kubeconfig_arguments(parser)
        parser.set_defaults(command=_manage, action=action)

    validate = k8s.add_parser("validate", help="check manifests offline against CRD schemas and Kubernetes' own")
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML manifests (`-` reads stdin)")
    crds = validate.add_mutually_exclusive_group()
    crds.add_argument("--crds", metavar="DIR", help="a directory of CRD YAMLs (e.g. KubeRay's ray.io_*.yaml)")
    crds.add_argument("--from-cluster", action="store_true", help="the CRDs installed on the kubeconfig's cluster")
    _kubeconfig_arguments(validate)
    validate.set_defaults(command=_validate)


def _experiment_arguments(parser: argparse.ArgumentParser, *, config_required: bool) -> None:
    config_arguments(parser, required=config_required)
    parser.add_argument("--tune", action="store_true", help="run the sweep (`rayspeed tune`) instead of one run")
    parser.add_argument("--image", help="the pods' image (sets k8s.image)")
    parser.add_argument("--namespace", help="sets k8s.namespace")


def _kubeconfig_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, else ~/.kube/config, else in-cluster")
    parser.add_argument("--context", help="kubeconfig context (default: its current one)")


def _tools(module: str):
    """`rayspeed.cluster.k8s.<module>`, whose libraries come with the k8s extra (rendering needs none)."""
    try:
        return importlib.import_module(f"rayspeed.cluster.k8s.{module}")
    except ModuleNotFoundError as error:
        if (error.name or "").startswith("rayspeed"):
            raise
        raise ConfigError(f"rayspeed k8s: needs {error.name}, which comes with the k8s extra: "
                          "pip install 'rayspeed[k8s]'") from None


def _rendered(args):
    from rayspeed.cluster.k8s.rayjob import render_rayjob

    flags = {"k8s.image": args.image, "k8s.namespace": args.namespace}
    overrides = [*args.overrides, *(f"{key}={value}" for key, value in flags.items() if value)]
    cfg = load_config(args.config, overrides)
    if args.tune:
        cfg.require_tune(source=args.config, verb="--tune")
    rendered = render_rayjob(cfg, verb="tune" if args.tune else "train", source=args.config)
    for note in rendered.notes:
        print(f"rayspeed: {note}", file=sys.stderr)
    return rendered


def _render(args) -> int:
    print(_rendered(args).yaml(), end="")
    return 0


def _apply(args) -> int:
    if bool(args.config) == bool(args.filename):
        raise ConfigError("k8s apply: give an experiment file or -f FILE (one of them)")
    api = _tools("api")
    manifests = _tools("schemas").load_documents(args.filename) if args.filename else _rendered(args).manifests
    cluster = api.KubeCluster(kubeconfig=args.kubeconfig, context=args.context)
    for line in cluster.create(manifests, dry_run=args.dry_run == "server"):
        print(line)
    for job in [m for m in manifests if m["kind"] == "RayJob"] if args.dry_run == "none" else []:
        where = f"{job['metadata']['name']} -n {job['metadata'].get('namespace') or 'default'}"
        print(f"rayspeed: follow it with `rayspeed k8s status {where}` and `rayspeed k8s logs {where} --follow`")
    return 0


def _manage(args) -> int:
    cluster = _tools("api").KubeCluster(kubeconfig=args.kubeconfig, context=args.context)
    namespace = args.namespace or cluster.default_namespace
    if args.action == "status":
        print("\n".join(cluster.status(args.name, namespace=namespace).lines()))
    elif args.action == "delete":
        print(cluster.delete(args.kind, args.name, namespace=namespace))
    else:
        try:
            for chunk in cluster.submitter_log(args.name, namespace=namespace, follow=args.follow):
                print(chunk, end="", flush=True)
        except KeyboardInterrupt:
            print(f"\nrayspeed: stopped following; the RayJob keeps running (`rayspeed k8s delete {args.name}`)")
    return 0


def _validate(args) -> int:
    schemas = _tools("schemas")
    if args.crds:
        validator = schemas.ManifestValidator.from_directory(args.crds)
    elif args.from_cluster:
        crds = _tools("api").KubeCluster(kubeconfig=args.kubeconfig, context=args.context).crds()
        validator = schemas.ManifestValidator(crds)
    else:
        validator = schemas.ManifestValidator()
    invalid = 0
    for file in args.files:
        for i, manifest in enumerate(schemas.load_documents("/dev/stdin" if file == "-" else file)):
            errors = validator.errors(manifest)
            invalid += bool(errors)
            what = f"{file}: " + (f"{manifest.get('kind')}/{(manifest.get('metadata') or {}).get('name')}"
                                  if isinstance(manifest, dict) else f"document {i + 1}")
            print(f"{what}: valid" if not errors else "\n".join(f"{what}: {error}" for error in errors))
    return 1 if invalid else 0
