"""Verbs on what a run left behind, without a Ray cluster: `export` (a checkpoint as a model that
loads with torch alone) and `report` (figures and an HTML page)."""

import argparse
import os
import sys
from pathlib import Path

from rayspeed.cli_arguments import ray_arguments, ray_target
from rayspeed.config.load import apply_overrides
from rayspeed.config.preflight import importable_from, preflight, wandb_mode
from rayspeed.config.saved import read_saved_config, read_saved_model, read_saved_tracking
from rayspeed.errors import ConfigError, RunStateError
from rayspeed.runs.layout import CONFIG_FILE, SWEEP_FILE
from rayspeed.runs.storage import RunStorage


def add_results_parsers(verbs: argparse._SubParsersAction) -> None:
    export = verbs.add_parser("export", help="consolidate a run's checkpoint (any ZeRO stage) into one "
                                             "safetensors model with its config and preprocessing")
    export.add_argument("run_dir", metavar="RUN_DIR", help="the run's directory (a path or a URI such as s3://b/runs/x)")
    export.add_argument("--out", required=True, type=Path, help="a new (or empty) directory for the export")
    _checkpoint_argument(export)
    export.add_argument("--registry", metavar="PATH", help="also link the W&B model artifact into W&B's registry, "
                                                            "e.g. wandb-registry-model/digits (W&B online only)")
    export.set_defaults(command=_export)
    evaluate = verbs.add_parser("evaluate", help="measure a checkpoint on a split of the run's data (on Ray): "
                                                 "metrics.json and predictions.parquet under RUN_DIR/evaluation/")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="the run's directory (a path or a URI such as s3://b/runs/x)")
    evaluate.add_argument("--split", choices=["test", "val", "train"], default="test",
                          help="the rows the run held back for testing (default), validation, or trained on")
    _checkpoint_argument(evaluate)
    ray_arguments(evaluate)
    evaluate.add_argument("--verbose", action="store_true", help="also show Ray's output (always in the run's log)")
    evaluate.set_defaults(command=_evaluate)
    predict = verbs.add_parser("predict", help="an exported model over a table or a folder of pictures (on Ray): "
                                               "one prediction per input row, in input order")
    predict.add_argument("export_dir", metavar="EXPORT_DIR", help="a directory `rayspeed export` wrote")
    predict.add_argument("input", metavar="INPUT", help="a parquet, CSV or JSON-lines file or folder of them "
                                                        "(a path or URI), or a folder of pictures")
    predict.add_argument("--out", required=True, type=Path, help="a new .parquet or .csv file")
    predict.add_argument("--actors", type=int, default=2, help="model replicas (Ray Data actors; default 2)")
    predict.add_argument("--gpu", action="store_true", help="one GPU per actor")
    ray_arguments(predict)
    predict.add_argument("--verbose", action="store_true", help="also show Ray's output")
    predict.set_defaults(command=_predict)
    report = verbs.add_parser("report", help="draw a run's (or a sweep's) results: PNG figures and an HTML page")
    report.add_argument("run_dir", metavar="RUN_DIR", help="the run's or sweep's directory (a path or a URI)")
    report.set_defaults(command=_report)


def _checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="best",
                        help="best (summary.json's, default), latest, or a checkpoint's name such as step_00000040")


def _evaluate(args: argparse.Namespace) -> int:
    """The run's own experiment, pre-flighted here (a model factory's module is shipped to Ray)."""
    from rayspeed.cluster.connection import connect
    from rayspeed.runs.output import capture_output, run_log_path
    from rayspeed.trainers.checkpoint_evaluation import evaluate_checkpoint
    from rayspeed.trainers.export import checkpoint_name
    from rayspeed.trainers.scores import describe_scores

    storage = RunStorage.at(args.run_dir)
    working_dir = os.getcwd()
    importable_from(working_dir)
    saved = read_saved_config(_saved_text(storage), source=storage.display(CONFIG_FILE))
    # The run's own weights are evaluated: where its initial ones came from no longer matters.
    checked = preflight(apply_overrides(saved, {"model.init_from": None, "model.freeze": []}), working_dir=working_dir)
    cfg = checked.cfg
    checkpoint = checkpoint_name(storage, args.checkpoint, warn=warn)  # before Ray starts
    target = ray_target(args, os.environ)
    log_path = run_log_path(storage)  # the run's log (a local copy for a run in object storage)
    with capture_output(log_path, verbose=args.verbose) as terminal:
        mode = wandb_mode(cfg.tracking, os.environ, say=terminal.say)
        with connect(cfg.scaling, address=target.address, env=os.environ, code_dir=checked.code_dir,
                     code_excludes=checked.code_excludes, send_credentials=target.send_credentials) as where:
            terminal.say(f"evaluating {checkpoint} of {storage.display()} on its {args.split} split, {where}")
            evaluation = evaluate_checkpoint(cfg, storage, split=args.split, which=checkpoint,
                                             wandb_mode=mode, warn=terminal.say)
        for line in describe_scores(evaluation.scores):
            terminal.say(line)
        terminal.say(f"written to {evaluation.directory}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    """Ray's output goes to a log next to the output file (or, with --verbose, to the terminal too)."""
    from rayspeed.cluster.connection import connect
    from rayspeed.config.scaling import ScalingConfig
    from rayspeed.runs.output import capture_output
    from rayspeed.trainers.prediction import predict_to_file

    log_path = args.out.with_name(f"{args.out.name}.log")
    scaling = ScalingConfig(num_workers=args.actors, use_gpu=args.gpu)
    target = ray_target(args, os.environ)
    with capture_output(log_path, verbose=args.verbose) as terminal:
        with connect(scaling, address=target.address, env=os.environ,
                     send_credentials=target.send_credentials) as where:
            terminal.say(f"predicting {args.input} with {args.export_dir} on {where}")
            predicted = predict_to_file(args.export_dir, args.input, args.out, actors=args.actors,
                                        use_gpu=args.gpu)
        if predicted.unusable:
            terminal.say(f"{predicted.unusable} rows have a missing or unparsable feature value: their prediction "
                         "is null")
        terminal.say(f"wrote {predicted.rows} predictions to {args.out} (Ray's output: {log_path})")
    return 0


def _export(args: argparse.Namespace) -> int:
    """Reads the run's saved config (its model section and ZeRO stage) and writes the export, then
    logs it to the run's W&B run (unless W&B is disabled)."""
    from rayspeed.trainers.export import export_checkpoint
    from rayspeed.trainers.model_artifact import log_export

    storage = RunStorage.at(args.run_dir)
    saved = _saved_text(storage)
    model, zero_stage = read_saved_model(saved, source=storage.display(CONFIG_FILE))
    tracking = read_saved_tracking(saved, source=storage.display(CONFIG_FILE))
    mode = wandb_mode(tracking, os.environ, say=warn)
    if args.registry and mode != "online":
        raise ConfigError(f"--registry {args.registry}: linking into W&B's registry needs W&B online, but the run's "
                          f"W&B mode is {mode} (tracking.mode, WANDB_MODE): link it from W&B after `wandb sync`")
    exported = export_checkpoint(model, storage, zero_stage=zero_stage, which=args.checkpoint, out=args.out, warn=warn)
    source = exported.source
    print(f"exported {source['checkpoint']} (step {source['step']}) of {source['run']} to {args.out}")
    try:
        where = log_export(tracking, storage, out=args.out, source=source, input_spec=exported.input_spec,
                           mode=mode, registry=args.registry)
    except Exception as error:  # the export itself is written
        warn(f"W&B did not take the model ({error!r})")
        return 1 if args.registry else 0
    if where:
        print(f"logged as a W&B model artifact{f' linked to {args.registry}' if args.registry else ''}: {where}")
    return 0


def _saved_text(storage: RunStorage) -> str:
    """The run's saved config.

    Raises:
        RunStateError: the directory is not a rayspeed run.
    """
    saved = storage.read_text(CONFIG_FILE)
    if saved is None:
        raise RunStateError(f"{storage.display()} is not a rayspeed run: it has no {CONFIG_FILE}")
    return saved


def warn(line: str) -> None:
    print(f"rayspeed: {line}", file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    """Draws the report, then logs a run's figures to its own W&B run, if it has one (a sweep's run got
    the sweep's plots when it ended); W&B's mode is settled first, so a dead server writes nothing."""
    from rayspeed.runs.report import write_report
    from rayspeed.trainers.tracking import results_run
    from rayspeed.trainers.wandb_media import figures

    storage = RunStorage.at(args.run_dir)
    saved = None if storage.exists(SWEEP_FILE) else storage.read_text(CONFIG_FILE)
    tracking = read_saved_tracking(saved, source=storage.display(CONFIG_FILE)) if saved else None
    mode = wandb_mode(tracking, os.environ, say=warn) if tracking else "disabled"
    written = write_report(storage)
    for name in written:
        print(storage.display(name))
    if tracking is None:
        return 0
    try:
        with results_run(tracking, storage, mode=mode) as run:
            if run is not None:
                run.log_media(figures(storage, [name for name in written if name.endswith(".png")]), after_last=True)
                print(f"figures logged to W&B: {run.where}")
    except Exception as error:  # the report itself is written
        warn(f"W&B did not take the figures ({error!r})")
    return 0
