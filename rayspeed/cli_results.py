"""Verbs on what a run left behind, without a Ray cluster: `export` (a checkpoint as a model that
loads with torch alone) and `report` (figures and an HTML page)."""

import argparse
import posixpath
from pathlib import Path

import yaml
from pydantic import TypeAdapter

from rayspeed.config.model import ModelConfig
from rayspeed.errors import RunStateError


def add_results_parsers(verbs) -> None:
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

    storage = _run_storage(args.run_dir)
    saved = storage.read_text(CONFIG_FILE)
    if saved is None:
        raise RunStateError(f"{args.run_dir} is not a rayspeed run: it has no {CONFIG_FILE}")
    saved = yaml.safe_load(saved)  # resolved and redacted: only its model section and ZeRO stage are read
    model = TypeAdapter(ModelConfig).validate_python(saved["model"])
    source = export_checkpoint(model, storage, zero_stage=saved["train"]["zero_stage"], which=args.checkpoint,
                               out=args.out)
    print(f"exported {source['checkpoint']} (step {source['step']}) of {source['run']} to {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from rayspeed.runs.report import write_report

    for line in write_report(_run_storage(args.run_dir)):
        print(line)
    return 0


def _run_storage(run_dir: str):
    """The run directory as storage: its parent and its name (a URI's options stay with the parent)."""
    from rayspeed.runs.storage import RunStorage

    location, separator, query = run_dir.partition("?")
    parent, name = posixpath.split(location.rstrip("/"))
    return RunStorage.open((parent or ".") + separator + query, name)
