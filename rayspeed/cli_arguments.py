"""Arguments every verb that reads an experiment file takes, the same way."""

import argparse


def config_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The experiment file and its dotted overrides (which may also follow the options)."""
    parser.add_argument("config", nargs=None if required else "?", help="experiment YAML file")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="dotted overrides, validated like the file (e.g. train.lr=3e-4)")
