"""`rayspeed` commands. Thin: parse arguments, validate the config, pre-flight, connect, call one function."""

import argparse
import json
import os
import signal
import sys
from collections.abc import Mapping

import yaml

from rayspeed.cli_k8s import add_k8s_parser
from rayspeed.config import ExperimentConfig, load_config
from rayspeed.config.preflight import importable_from, preflight
from rayspeed.config.redact import redact
from rayspeed.errors import ClusterError, ConfigError, DataError, RayspeedError, TrainingFailed

USER_ERROR_EXIT = 2
STOPPED_EXIT = 128 + signal.SIGTERM
INTERRUPTED_EXIT = 128 + signal.SIGINT
_stopping: list[int] = []  # the SIGTERM the handler turned into a KeyboardInterrupt
# What trials (Ray actors, possibly on other machines) need to reach W&B online.
WANDB_ENV = ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return args.command(args)
    except KeyboardInterrupt:
        how = "stopped by SIGTERM" if _stopping else "interrupted"
        print(f"rayspeed: {how}; a run keeps its checkpoints: continue it with --resume", file=sys.stderr)
        return STOPPED_EXIT if _stopping else INTERRUPTED_EXIT
    except TrainingFailed as error:
        print(f"rayspeed: {error}", file=sys.stderr)
        return 1
    except RayspeedError as error:
        print(f"rayspeed: {error}", file=sys.stderr)
        return USER_ERROR_EXIT


def _stop(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so the run's log and W&B are closed before the process ends.
    A KeyboardInterrupt, because Ray's blocking calls drop any other exception a handler raises."""
    _stopping.append(signum)
    raise KeyboardInterrupt


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Overrides may also follow the options (`train x.yaml --resume train.epochs=9`)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "overrides") or any(arg.startswith("-") or "=" not in arg for arg in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def _train(args) -> int:
    overrides = [*args.overrides, *(["run.resume=required"] if args.resume else [])]
    working_dir = os.getcwd()
    importable_from(working_dir)  # a model module next to the experiment file, as `python -m` allows
    checked = preflight(load_config(args.config, overrides), working_dir=working_dir)
    cfg = checked.cfg
    from rayspeed.runs.guard import claim_run
    from rayspeed.runs.storage import RunStorage

    storage = RunStorage.open(cfg.run.storage_path, cfg.run.name)
    start = claim_run(cfg, storage)

    def train(terminal):
        terminal.say(start.message)
        return _fit_on_cluster(cfg, storage, start, terminal, address=args.address or os.environ.get("RAY_ADDRESS"),
                               code_dir=checked.code_dir, code_excludes=checked.code_excludes, env=os.environ)

    # Found once Ray had read the data (a model that cannot be built, a split too small), or a cluster
    # that cannot be joined: a new run that never trained gives its name back, so a retry can use it.
    return _in_run_log(storage, start, work=train, verbose=args.verbose,
                       give_back=(ConfigError, DataError, ClusterError))


def _in_run_log(storage, start, *, work, verbose: bool, give_back: tuple[type, ...],
                may_give_back=lambda: True) -> int:
    """Runs `work(terminal)` with the console captured into the run's log and prints its summary.
    A new run (or sweep) refused by one of the `give_back` errors frees its name."""
    from rayspeed.runs.guard import release_claim
    from rayspeed.runs.output import capture_output, keep_log, run_log_path

    log_path = run_log_path(storage)
    try:
        with capture_output(log_path, verbose=verbose) as terminal:
            try:
                summary = work(terminal)
            finally:
                keep_log(storage, log_path)
            for line in summary.lines():
                terminal.say(line)
    except RayspeedError as error:
        if isinstance(error, give_back) and not start.resuming and may_give_back() and release_claim(storage):
            raise
        print(f"rayspeed: the full log is in {log_path}", file=sys.stderr, flush=True)
        raise
    return 0


def _fit_on_cluster(cfg, storage, start, terminal, *, address: str | None, code_dir: str | None,
                    code_excludes: list[str], env: Mapping[str, str]):
    """Imports Ray and torch only here, once the config is valid and the run is claimed."""
    from rayspeed.cluster.connection import connect
    from rayspeed.runs.progress import ProgressDisplay
    from rayspeed.trainers.driver import fit

    with connect(cfg.scaling, address=address, env=env, code_dir=code_dir, code_excludes=code_excludes,
                 storage_path=cfg.run.storage_path) as where:
        signal.signal(signal.SIGTERM, _stop)  # after ray.init, which installs its own (exit at once)
        terminal.say(f"cluster: {where}")
        return fit(cfg, storage=storage, start=start, wandb_mode=wandb_mode(cfg.tracking.mode, env),
                   observers=[ProgressDisplay(terminal)])


def _tune(args) -> int:
    overrides = [*args.overrides, *(["run.resume=required"] if args.resume else [])]
    working_dir = os.getcwd()
    importable_from(working_dir)
    checked = preflight(load_config(args.config, overrides), working_dir=working_dir)
    cfg = checked.cfg
    _require_tune_section(cfg, args.config, verb="rayspeed tune")
    from rayspeed.runs.guard import claim_run
    from rayspeed.runs.layout import TUNER_STATE
    from rayspeed.runs.storage import RunStorage

    storage = RunStorage.open(cfg.run.storage_path, cfg.run.name)
    start = claim_run(cfg, storage)  # the sweep's directory: refused when it exists, unless resuming

    def tune(terminal):
        return _sweep_on_cluster(cfg, storage, start, terminal, args=args, code_dir=checked.code_dir,
                                 code_excludes=checked.code_excludes, env=os.environ)

    # Refused before Tune started (the cluster cannot hold one trial): a new sweep gives its name back.
    return _in_run_log(storage, start, work=tune, verbose=args.verbose, give_back=(ClusterError,),
                       may_give_back=lambda: not storage.exists(TUNER_STATE))


def _sweep_on_cluster(cfg, storage, start, terminal, *, args, code_dir: str | None, code_excludes: list[str],
                      env: Mapping[str, str]):
    from rayspeed.cluster.connection import connect
    from rayspeed.tuning.driver import embedded_cpus, sweep

    address = args.address or env.get("RAY_ADDRESS")
    with connect(cfg.scaling, address=address, env=env, code_dir=code_dir, code_excludes=code_excludes,
                 embedded_cpus=embedded_cpus(cfg), storage_path=cfg.run.storage_path) as where:
        signal.signal(signal.SIGTERM, _stop)
        terminal.say(f"cluster: {where}")
        return sweep(cfg, storage=storage, resuming=start.resuming, wandb_mode=wandb_mode(cfg.tracking.mode, env),
                     wandb_env={key: env[key] for key in WANDB_ENV if key in env}, terminal=terminal,
                     retry_errored=args.retry_errored, where=where)


def _require_tune_section(cfg: ExperimentConfig, config: str, *, verb: str) -> None:
    if cfg.tune is None:
        raise ConfigError(f"{config}: tune: required by `{verb}` but missing (a search space, "
                          "e.g. tune: {space: {train.lr: {loguniform: [1.0e-4, 1.0e-2]}}})")


def _submit(args) -> int:
    """Validates here, then hands the experiment to the cluster as a Ray Job."""
    from rayspeed.cluster.jobs import JobsClient, jobs_address
    from rayspeed.cluster.submission import job_request

    if args.retry_errored and not (args.tune and args.resume):
        raise ConfigError("--retry-errored: only with --tune --resume (it reruns a resumed sweep's failed trials)")
    cfg = load_config(args.config, args.overrides)
    if args.tune:
        _require_tune_section(cfg, args.config, verb="rayspeed submit --tune")
    flags = [*(["--resume"] if args.resume else []), *(["--retry-errored"] if args.retry_errored else [])]
    request = job_request(cfg.run, verb="tune" if args.tune else "train", config_file=args.config,
                          overrides=args.overrides, working_dir=os.getcwd(), flags=flags, env=os.environ,
                          wandb_key=_wandb_key(args), driver_cpus=args.driver_cpus,
                          driver_on_head=not args.driver_anywhere)
    client = JobsClient(jobs_address(args.address, os.environ), env=os.environ)
    job_id = client.submit(request)
    print(f"rayspeed: submitted job {job_id} to {client.url}: {request.describe()}", flush=True)
    if not args.follow:
        print(f"rayspeed: follow it with `rayspeed jobs logs {job_id} --follow`; stop it with "
              f"`rayspeed jobs stop {job_id}`")
        return 0
    return _follow(client, job_id)


def _wandb_key(args) -> str | None:
    """The key for the job's driver: from a file or WANDB_API_KEY, never from the command line."""
    if args.no_wandb_key:
        return None
    if args.wandb_key_file:
        try:
            with open(os.path.expanduser(args.wandb_key_file)) as key_file:
                return key_file.read().strip() or None
        except OSError as error:
            raise ConfigError(f"--wandb-key-file: cannot read {args.wandb_key_file}: {error.strerror}") from None
    return os.environ.get("WANDB_API_KEY")


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


def wandb_mode(configured: str, env: Mapping[str, str]) -> str:
    """`tracking.mode`, where `auto` means: WANDB_MODE if set, else online with a key, else offline."""
    if configured != "auto":
        return configured
    if env.get("WANDB_MODE") in ("online", "offline", "disabled"):
        return env["WANDB_MODE"]
    return "online" if env.get("WANDB_API_KEY") else "offline"


def _config_show(args) -> int:
    cfg = load_config(args.config, args.overrides)
    print("# resolved experiment config")
    print(yaml.safe_dump(redact(cfg.resolved_dict()), sort_keys=False), end="")
    print("\n# generated DeepSpeed config (the lr schedule is rayspeed's: train.lr_schedule, train.warmup_steps)")
    print(json.dumps(redact(cfg.deepspeed_config()), indent=2))
    return 0


def _config_validate(args) -> int:
    cfg = load_config(args.config, args.overrides)
    print(f"{args.config}: valid (run '{cfg.run.name}', global batch {cfg.batch.global_batch})")
    return 0


def _schema(args) -> int:
    print(json.dumps(ExperimentConfig.model_json_schema(), indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayspeed", description=__doc__)
    verbs = parser.add_subparsers(required=True, metavar="COMMAND")

    train = verbs.add_parser("train", help="train the experiment on Ray")
    _ray_arguments(train, resume="continue the run from its latest checkpoint (sets run.resume=required)",
                   verbose="also show Ray's, Ray Data's and DeepSpeed's output (always in the run's rayspeed.log)")
    train.set_defaults(command=_train)

    tune = verbs.add_parser("tune", help="run the experiment's hyperparameter search (its tune section) on Ray")
    _ray_arguments(tune, resume="continue an interrupted sweep: finished trials are kept, unfinished ones resume",
                   verbose="also show Ray's and Tune's output (always in the sweep's rayspeed.log)")
    tune.add_argument("--retry-errored", action="store_true",
                      help="with --resume: also run failed trials again (from their checkpoints)")
    tune.set_defaults(command=_tune)

    config = verbs.add_parser("config", help="inspect an experiment file").add_subparsers(required=True,
                                                                                          metavar="ACTION")
    show = config.add_parser("show", help="print the resolved config and the generated DeepSpeed config")
    _config_arguments(show)
    show.set_defaults(command=_config_show)
    check = config.add_parser("validate", help="validate the file (and overrides) without running anything")
    _config_arguments(check)
    check.set_defaults(command=_config_validate)

    verbs.add_parser("schema", help="print the experiment JSON Schema (for editor completion)").set_defaults(
        command=_schema)
    _submit_parser(verbs)
    _jobs_parser(verbs)
    _cluster_parser(verbs)
    add_k8s_parser(verbs)
    return parser


def _submit_parser(verbs) -> None:
    submit = verbs.add_parser("submit", help="run the experiment on a Ray cluster as a Ray Job (ships this "
                                             "directory and this rayspeed)")
    _config_arguments(submit)
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
    key = submit.add_mutually_exclusive_group()
    key.add_argument("--wandb-key-file", metavar="PATH",
                     help="read the W&B API key for the job from this file (default: $WANDB_API_KEY)")
    key.add_argument("--no-wandb-key", action="store_true",
                     help="pass no W&B key: the cluster's own environment provides it")
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


def _ray_arguments(parser: argparse.ArgumentParser, *, resume: str, verbose: str) -> None:
    """A verb that runs on Ray: the experiment, where to run it, whether to continue, how much to show."""
    _config_arguments(parser)
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)")
    parser.add_argument("--resume", action="store_true", help=resume)
    parser.add_argument("--verbose", action="store_true", help=verbose)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML file")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="dotted overrides, validated like the file (e.g. train.lr=3e-4)")
