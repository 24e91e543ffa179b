"""The names of everything in a run directory, in one place (the README's table lists the same)."""

from pathlib import Path

CONFIG_FILE = "config.yaml"  # the resolved config the run started with, secrets removed
IDENTITY_FILE = "rayspeed.json"  # the run's identity: W&B run id, who claimed it and when
METRICS_FILE = "metrics.jsonl"  # one row per logged step
PREPROCESSING_FILE = "preprocessing.json"  # fitted on the train split: fills, clips, means/stds, vocabularies, classes
INPUT_SPEC_FILE = "input_spec.json"  # what the model takes and gives: features, shapes, classes, task
DATA_REPORT_FILE = "data_report.json"  # rows read, dropped (by reason), missing values per column, split sizes
SUMMARY_FILE = "summary.json"
LOG_FILE = "rayspeed.log"  # everything Ray, Ray Data and DeepSpeed printed, plus rayspeed's own lines
LOSS_CURVES_FILE = "loss_curves.png"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
WARM_START_DIR = "warm_start"  # another run's checkpoint this run starts from (a PBT trial's exploit)
# A sweep's directory (`run.storage_path/run.name` of `rayspeed tune`): Tune's own files, trials/, and
TUNER_STATE = "tuner.pkl"  # Ray Tune's own: the sweep has started
SWEEP_FILE = "sweep.json"  # every trial: status, values, best metric, history, run
BEST_FILE = "best.json"  # the best trial: values, metrics, run and checkpoint
BEST_CONFIG_FILE = "best_config.yaml"  # the experiment with the best values: `rayspeed train` it
SWEEP_VALUES_FILE = "sweep_values.png"  # the metric against each searched value
SWEEP_CURVES_FILE = "sweep_curves.png"  # every trial's learning curve, early stops marked
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the checkpoints
EVALUATION_DIR = "evaluation"  # `rayspeed evaluate`: CHECKPOINT-SPLIT/metrics.json and predictions.parquet
CORRUPT_DIR = "corrupt"  # checkpoints that failed verification on resume, set aside (never deleted)
CHECKPOINT_PREFIX = "step_"
# Inside a checkpoint: DeepSpeed's tag folder (model, ZeRO shards, lr schedule) and the loop's state.
DEEPSPEED_TAG = "deepspeed"
TRAIN_STATE = "train_state.json"


def local_run_dir(name: str) -> Path:
    """This machine's folder for a run stored in object storage: its log and W&B files are written
    here (W&B and the log need a local disk), the log is copied to the run directory at the end."""
    return Path.home() / ".rayspeed" / name


def checkpoint_dir_name(step: int) -> str:
    """`step_00000040`: zero padded, so names sort by step."""
    return f"{CHECKPOINT_PREFIX}{step:08d}"
