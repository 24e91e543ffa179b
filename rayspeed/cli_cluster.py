"""`rayspeed submit`, `jobs ...` and `cluster ...`: experiments handed to a Ray cluster as Ray Jobs,
and a real multi-node cluster on this machine. Thin, like cli.py."""

import argparse
import os

from rayspeed.cli_arguments import config_arguments
from rayspeed.config import load_config
from rayspeed.errors import ConfigError


def add_cluster_parsers(verbs) -> None:
    """`submit`, `jobs ...` and `cluster ...`."""
    _submit_parser(verbs)
    _jobs_parser(verbs)
    _cluster_parser(verbs)


def _submit_parser(verbs) -> None:
    submit = verbs.add_parser("submit", help="run the experiment on a Ray cluster as a Ray Job (ships this "
                                             "directory and this rayspeed)")
    config_arguments(submit)
    _jobs_address(submit)
    submit.add_argument("--tune", action="store_true", help="run the sweep (`rayspeed tune`) instead of one run")
    submit.add_argument("--resume", action="store_true", help="continue the run or sweep from its checkpoints")
    submit.add_argument("--retry-errored", action="store_true", help="with --tune --resume: rerun failed trials")
    submit.add_argument("--follow", action="store_true", help="stream the job's log until it ends; exit 0 "
                                                              "only if it SUCCEEDED")
    submit.add_argument("--driver-cpus", type=float, default=1.0,
                        help="CPUs reserved for the job's driver (default 1)")
    submit.add_argument("--driver-anywhere", action="store_true",
                        help="let Ray place the driver on any node (default: the head node, which lives as "
                             "long as the cluster; the Train controller runs next to the driver)")
    submit.set_defaults(command=_submit)


def _jobs_parser(verbs) -> None:
    jobs = verbs.add_parser("jobs", help="list, inspect, follow and stop Ray Jobs").add_subparsers(
        required=True, metavar="ACTION", dest="action")
    for action, text in (("list", "the cluster's jobs"), ("status", "one job's status, message and run"),
                         ("logs", "one job's log"), ("stop", "stop a job (its run keeps its checkpoints)")):
        parser = jobs.add_parser(action, help=text)
        if action != "list":
            parser.add_argument("job", help="submission id (as printed by `rayspeed submit`)")
        if action == "logs":
            parser.add_argument("--follow", action="store_true", help="stream the log until the job ends")
        _jobs_address(parser)
        parser.set_defaults(command=_jobs)


def _cluster_parser(verbs) -> None:
    cluster = verbs.add_parser("cluster", help="a local multi-node Ray cluster; any cluster's status").add_subparsers(
        required=True, metavar="ACTION")
    up = cluster.add_parser("up", help="start a head and N worker nodes on this machine (`ray start`)")
    up.add_argument("--workers", type=_count, default=2, help="worker nodes besides the head (default 2)")
    up.add_argument("--cpus-per-node", type=_count, default=2, help="logical CPUs of each node (default 2)")
    up.add_argument("--object-store-mib", type=int,
                    help="object store of each node (default: Ray's 30%% of memory, shared among the nodes)")
    up.add_argument("--dashboard-port", type=int, help="default 8265, or a free port when that is taken")
    up.set_defaults(command=_cluster_up)
    status = cluster.add_parser("status", help="nodes, resources and jobs of the local or --address cluster")
    _jobs_address(status)
    status.set_defaults(command=_cluster_status)
    cluster.add_parser("down", help="stop the local cluster; no Ray process of it is left").set_defaults(
        command=_cluster_down)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _jobs_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="the cluster's dashboard, http://HOST:8265 (default: "
                                          "$RAY_API_SERVER_ADDRESS, else the cluster of `rayspeed cluster up`)")


def _submit(args) -> int:
    """Validates here, then hands the experiment to the cluster as a Ray Job."""
    from rayspeed.cluster.jobs import JobsClient, jobs_address
    from rayspeed.cluster.submission import job_request

    if args.retry_errored and not (args.tune and args.resume):
        raise ConfigError("--retry-errored: only with --tune --resume (it reruns a resumed sweep's failed trials)")
    cfg = load_config(args.config, args.overrides)
    if args.tune:
        cfg.require_tune(source=args.config, verb="rayspeed submit --tune")
    flags = [*(["--resume"] if args.resume else []), *(["--retry-errored"] if args.retry_errored else [])]
    request = job_request(cfg, verb="tune" if args.tune else "train", config_file=args.config,
                          overrides=args.overrides, working_dir=os.getcwd(), flags=flags, env=os.environ,
                          driver_cpus=args.driver_cpus, driver_on_head=not args.driver_anywhere)
    client = JobsClient(jobs_address(args.address, os.environ), env=os.environ)
    job_id = client.submit(request)
    print(f"rayspeed: submitted job {job_id} to {client.url}: {request.describe()}", flush=True)
    if not args.follow:
        print(f"rayspeed: follow it with `rayspeed jobs logs {job_id} --follow`; stop it with "
              f"`rayspeed jobs stop {job_id}`")
        return 0
    return _follow(client, job_id)


def _follow(client, job_id: str) -> int:
    try:
        status = client.follow(job_id, write=lambda chunk: print(chunk, end="", flush=True))
    except KeyboardInterrupt:
        print(f"\nrayspeed: stopped following; job {job_id} keeps running (`rayspeed jobs stop {job_id}`)")
        return 130
    print(f"rayspeed: job {job_id} {status}")
    return 0 if status == "SUCCEEDED" else 1


def _jobs(args) -> int:
    from rayspeed.cluster import listing
    from rayspeed.cluster.jobs import JobsClient, jobs_address

    client = JobsClient(jobs_address(args.address, os.environ), env=os.environ)
    if args.action == "list":
        print(f"jobs on {client.url}:")
        print("\n".join(listing.job_line(job) for job in client.list()) or "  none")
    elif args.action == "status":
        print("\n".join(listing.job_details(client.info(args.job))))
    elif args.action == "logs":
        if args.follow:
            return _follow(client, args.job)
        print(client.logs(args.job), end="")
    else:
        print(f"rayspeed: stopping job {args.job}", flush=True)
        status = client.stop(args.job)
        print(f"rayspeed: job {args.job} {status}")
    return 0


def _cluster_up(args) -> int:
    from rayspeed.cluster.credentials import SECRET_ENV
    from rayspeed.cluster.jobs import auth_token
    from rayspeed.cluster.local_cluster import start_local_cluster

    print(f"rayspeed: starting a head and {args.workers} worker nodes with {args.cpus_per_node} CPUs each", flush=True)
    cluster = start_local_cluster(workers=args.workers, cpus_per_node=args.cpus_per_node,
                                  object_store_mib=args.object_store_mib, dashboard_port=args.dashboard_port,
                                  env=os.environ)
    print(f"rayspeed: local cluster up: {cluster.num_nodes} nodes, {cluster.num_nodes * cluster.cpus_per_node} CPUs")
    print(f"  jobs and dashboard: {cluster.dashboard_url} (the default of `rayspeed submit` and `rayspeed jobs`)")
    print(f"  Ray address: {cluster.gcs_address} (for `rayspeed train --address`)")
    token = auth_token(os.environ) if cluster.token_auth else None
    print(f"  token authentication: {f'on (token from {token.source})' if token else 'off'}")
    held = [key for key in SECRET_ENV if os.environ.get(key)]
    print(f"  credentials of its jobs: {', '.join(held) + ' from this shell' if held else 'none'} (the nodes' "
          "environment; `rayspeed submit` sends none)")
    print("  stop it with `rayspeed cluster down`")
    return 0


def _cluster_status(args) -> int:
    from rayspeed.cluster import listing
    from rayspeed.cluster.jobs import JobsClient, jobs_address

    client = JobsClient(jobs_address(args.address, os.environ), env=os.environ)
    nodes, jobs = client.nodes(), client.list()
    print(f"Ray cluster at {client.url}: {sum(node.state == 'ALIVE' for node in nodes)} nodes alive")
    print("\n".join(listing.node_lines(nodes)))
    print(f"jobs ({len(jobs)}):")
    print("\n".join(listing.job_line(job) for job in jobs) or "  none")
    return 0


def _cluster_down(args) -> int:
    from rayspeed.cluster.local_cluster import read_state, stop_local_cluster

    if read_state(os.environ) is None:
        print("rayspeed: no local cluster is up")
        return 0
    stopped = stop_local_cluster(os.environ)
    print(f"rayspeed: local cluster down ({stopped} Ray processes stopped)")
    return 0
