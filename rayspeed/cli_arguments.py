"""Arguments every verb that reads an experiment file, or runs on Ray, takes the same way."""

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from rayspeed.errors import ConfigError


def config_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The experiment file and its dotted overrides (which may also follow the options)."""
    parser.add_argument("config", nargs=None if required else "?", help="experiment YAML file")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="dotted overrides, validated like the file (e.g. train.lr=3e-4)")


@dataclass(frozen=True)
class RayTarget:
    """Where a verb runs on Ray, and whether this shell's credentials go to the cluster's processes."""

    address: str | None
    send_credentials: bool


def ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)")
    parser.add_argument("--cluster-credentials", action="store_true",
                        help="on a cluster: send none of this shell's credentials (WANDB_API_KEY, AWS_*); the "
                             "cluster's processes use their own environment")


def ray_target(args: argparse.Namespace, env: Mapping[str, str]) -> RayTarget:
    address = args.address or env.get("RAY_ADDRESS")
    if args.cluster_credentials and not address:
        raise ConfigError("--cluster-credentials: only with a cluster (--address or RAY_ADDRESS); an embedded "
                          "Ray's processes have this shell's environment")
    return RayTarget(address, send_credentials=not args.cluster_credentials)
