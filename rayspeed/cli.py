"""`rayspeed` commands. Thin: parse arguments, validate the config, call one function per verb."""

import argparse
import json
import os
import sys

import yaml

from rayspeed.config import ExperimentConfig, load_config
from rayspeed.config.redact import redact
from rayspeed.errors import RayspeedError, TrainingFailed

USER_ERROR_EXIT = 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except TrainingFailed as error:
        print(f"rayspeed: {error}", file=sys.stderr)
        return 1
    except RayspeedError as error:
        print(f"rayspeed: {error}", file=sys.stderr)
        return USER_ERROR_EXIT


def _train(args) -> int:
    overrides = [*args.overrides, *(["run.resume=required"] if args.resume else [])]
    cfg = load_config(args.config, overrides)
    from rayspeed.trainers.driver import fit  # imports Ray and torch: only once the config is valid

    summary = fit(cfg, address=args.address or os.environ.get("RAY_ADDRESS"), env=dict(os.environ))
    print("\n".join(f"[rayspeed] {line}" for line in summary.lines()))
    return 0


def _config_show(args) -> int:
    cfg = load_config(args.config, args.overrides)
    total = cfg.train.max_steps
    print("# resolved experiment config")
    print(yaml.safe_dump(redact(cfg.resolved_dict()), sort_keys=False), end="")
    print("\n# generated DeepSpeed config" +
          ("" if total else " (total_num_steps = epochs x steps per epoch, known once the data is read)"))
    print(json.dumps(redact(cfg.deepspeed_config(total_steps=total)), indent=2))
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
    _config_arguments(train)
    train.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run from its latest checkpoint (sets run.resume=required)")
    train.set_defaults(command=_train)

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
    return parser


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML file")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="dotted overrides, validated like the file (e.g. train.lr=3e-4)")
