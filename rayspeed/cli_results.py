"""Verbs on what a run left behind, without a Ray cluster: `export` (a checkpoint as a model that
loads with torch alone) and `report` (figures and an HTML page)."""

import argparse
import json
import sys
from pathlib import Path

import yaml

from rayspeed.config.redact import REDACTED
from rayspeed.errors import ConfigError, RunStateError
from rayspeed.runs.storage import RunStorage


def add_results_parsers(verbs: argparse._SubParsersAction) -> None:
    export = verbs.add_parser("export", help="consolidate a run's checkpoint (any ZeRO stage) into one "
                                             "safetensors model with its config and preprocessing")
    export.add_argument("run_dir", metavar="RUN_DIR", help="the run's directory (a path or a URI such as s3://b/runs/x)")
    export.add_argument("--out", required=True, type=Path, help="a new (or empty) directory for the export")
    export.add_argument("--checkpoint", default="best",
                        help="best (summary.json's, default), latest, or a checkpoint's name such as step_00000040")
    export.set_defaults(command=_export)
    report = verbs.add_parser("report", help="draw a run's (or a sweep's) results: PNG figures and an HTML page")
    report.add_argument("run_dir", metavar="RUN_DIR", help="the run's or sweep's directory (a path or a URI)")
    report.set_defaults(command=_report)


def _export(args: argparse.Namespace) -> int:
    """Reads the run's saved config (its model section and ZeRO stage) and writes the export."""
    from rayspeed.runs.layout import CONFIG_FILE
    from rayspeed.trainers.export import export_checkpoint
    from rayspeed.trainers.exported import model_section

    storage = RunStorage.at(args.run_dir)
    saved = storage.read_text(CONFIG_FILE)
    if saved is None:
        raise RunStateError(f"{args.run_dir} is not a rayspeed run: it has no {CONFIG_FILE}")
    saved = yaml.safe_load(saved)  # resolved and redacted: only its model section and ZeRO stage are read
    if REDACTED in json.dumps(saved.get("model")):
        raise ConfigError(f"{storage.display(CONFIG_FILE)}: the model section holds a value saved as {REDACTED} "
                          "(its key looks like a secret's); the model cannot be rebuilt from it")
    try:
        model, zero_stage = model_section(saved["model"]), saved["train"]["zero_stage"]
    except (KeyError, ValueError) as error:
        raise ConfigError(f"{storage.display(CONFIG_FILE)}: not the config of this rayspeed: {error}") from None
    source = export_checkpoint(model, storage, zero_stage=zero_stage, which=args.checkpoint, out=args.out,
                               warn=lambda line: print(f"rayspeed: {line}", file=sys.stderr))
    print(f"exported {source['checkpoint']} (step {source['step']}) of {source['run']} to {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from rayspeed.runs.report import write_report

    for line in write_report(RunStorage.at(args.run_dir)):
        print(line)
    return 0
