"""`rayspeed` commands. Thin: parse arguments, validate the config, pre-flight, connect, call one function."""

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping

import yaml

from rayspeed.cli_arguments import RayTarget, config_arguments, ray_arguments, ray_target
from rayspeed.cli_cluster import add_cluster_parsers
from rayspeed.cli_k8s import add_k8s_parser
from rayspeed.cli_results import add_results_parsers, warn
from rayspeed.config import ExperimentConfig, load_config
from rayspeed.config.preflight import importable_from, preflight, training_wandb_mode
from rayspeed.config.redact import redact, redact_uri
from rayspeed.errors import ClusterError, ConfigError, DataError, RayspeedError, RunStopped, TrainingFailed

USER_ERROR_EXIT = 2
STOPPED_EXIT = 128 + signal.SIGTERM
INTERRUPTED_EXIT = 128 + signal.SIGINT
_stopping: list[int] = []  # the SIGTERM the handler turned into a KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # Read by Ray (a driver's entrypoint, shown by the state API) and W&B (a run's metadata): an override
    # that carries credentials (run.storage_path=s3://KEY:SECRET@...) is kept out of both.
    sys.argv[1:] = [redact_uri(arg) for arg in sys.argv[1:]]
    try:
        return args.command(args)
    except KeyboardInterrupt:
        how = "stopped by SIGTERM" if _stopping else "interrupted"
        print(f"rayspeed: {how}; a run keeps its checkpoints: continue it with --resume", file=sys.stderr)
        return STOPPED_EXIT if _stopping else INTERRUPTED_EXIT
    except RunStopped as error:
        print(f"rayspeed: stopped by SIGTERM; {error}", file=sys.stderr)
        return STOPPED_EXIT
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


def _stop_gracefully(requested: threading.Event):
    """A training run's first SIGTERM asks it to checkpoint at the next step and stop
    (`run.stop_grace_s`); a second one (sent by the run itself when the grace period ends) unwinds."""
    def handler(signum, frame) -> None:
        if requested.is_set():
            _stop(signum, frame)
        requested.set()

    return handler


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
    mode = training_wandb_mode(cfg.tracking, os.environ, say=warn)
    target = ray_target(args, os.environ)
    from rayspeed.runs.guard import claim_run
    from rayspeed.runs.storage import RunStorage

    storage = RunStorage.open(cfg.run.storage_path, cfg.run.name)
    start = claim_run(cfg, storage)

    def train(terminal):
        terminal.say(start.message)
        return _fit_on_cluster(cfg, storage, start, terminal, target=target, code_dir=checked.code_dir,
                               code_excludes=checked.code_excludes, env=os.environ, wandb_mode=mode)

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


def _fit_on_cluster(cfg, storage, start, terminal, *, target: RayTarget, code_dir: str | None,
                    code_excludes: list[str], env: Mapping[str, str], wandb_mode: str):
    """Imports Ray and torch only here, once the config is valid and the run is claimed."""
    from rayspeed.cluster.connection import connect
    from rayspeed.runs.progress import ProgressDisplay
    from rayspeed.trainers.driver import fit

    with connect(cfg.scaling, address=target.address, env=env, code_dir=code_dir, code_excludes=code_excludes,
                 storage_path=cfg.run.storage_path, send_credentials=target.send_credentials) as where:
        stop_requested = threading.Event()
        signal.signal(signal.SIGTERM, _stop_gracefully(stop_requested))  # after ray.init, which installs its own
        terminal.say(f"cluster: {where}")
        return fit(cfg, storage=storage, start=start, wandb_mode=wandb_mode,
                   observers=[ProgressDisplay(terminal)], stop_requested=stop_requested)


def _tune(args) -> int:
    overrides = [*args.overrides, *(["run.resume=required"] if args.resume else [])]
    working_dir = os.getcwd()
    importable_from(working_dir)
    checked = preflight(load_config(args.config, overrides), working_dir=working_dir)
    cfg = checked.cfg
    cfg.require_tune(source=args.config, verb="rayspeed tune")
    mode = training_wandb_mode(cfg.tracking, os.environ, say=warn)
    target = ray_target(args, os.environ)
    from rayspeed.runs.guard import claim_run
    from rayspeed.runs.layout import TUNER_STATE
    from rayspeed.runs.storage import RunStorage

    storage = RunStorage.open(cfg.run.storage_path, cfg.run.name)
    start = claim_run(cfg, storage)  # the sweep's directory: refused when it exists, unless resuming

    def tune(terminal):
        return _sweep_on_cluster(cfg, storage, start, terminal, args=args, target=target, code_dir=checked.code_dir,
                                 code_excludes=checked.code_excludes, env=os.environ, wandb_mode=mode)

    # Refused before Tune started (the cluster cannot hold one trial): a new sweep gives its name back.
    return _in_run_log(storage, start, work=tune, verbose=args.verbose, give_back=(ClusterError,),
                       may_give_back=lambda: not storage.exists(TUNER_STATE))


def _sweep_on_cluster(cfg, storage, start, terminal, *, args, target: RayTarget, code_dir: str | None,
                      code_excludes: list[str], env: Mapping[str, str], wandb_mode: str):
    from rayspeed.cluster.connection import connect
    from rayspeed.tuning.driver import embedded_cpus, sweep

    with connect(cfg.scaling, address=target.address, env=env, code_dir=code_dir, code_excludes=code_excludes,
                 embedded_cpus=embedded_cpus(cfg), storage_path=cfg.run.storage_path,
                 send_credentials=target.send_credentials) as where:
        signal.signal(signal.SIGTERM, _stop)
        terminal.say(f"cluster: {where}")
        return sweep(cfg, storage=storage, resuming=start.resuming, wandb_mode=wandb_mode, terminal=terminal,
                     retry_errored=args.retry_errored, where=where)


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
    config_arguments(show)
    show.set_defaults(command=_config_show)
    check = config.add_parser("validate", help="validate the file (and overrides) without running anything")
    config_arguments(check)
    check.set_defaults(command=_config_validate)

    verbs.add_parser("schema", help="print the experiment JSON Schema (for editor completion)").set_defaults(
        command=_schema)
    add_results_parsers(verbs)
    add_cluster_parsers(verbs)
    add_k8s_parser(verbs)
    return parser


def _ray_arguments(parser: argparse.ArgumentParser, *, resume: str, verbose: str) -> None:
    """A verb that runs on Ray: the experiment, where to run it, whether to continue, how much to show."""
    config_arguments(parser)
    ray_arguments(parser)
    parser.add_argument("--resume", action="store_true", help=resume)
    parser.add_argument("--verbose", action="store_true", help=verbose)
