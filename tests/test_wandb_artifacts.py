"""W&B's part of a run without Ray: which checkpoints become artifacts under which aliases, the
results as W&B media, and the mode a run records in (its server probed before any Ray work)."""

import socket

import numpy as np
import pytest
from sklearn import metrics

from rayspeed.config.preflight import training_wandb_mode, wandb_mode
from rayspeed.config.tracking import TrackingConfig
from rayspeed.errors import ConfigError
from rayspeed.trainers.checkpoint_artifacts import CommittedCheckpoint, LoggedCheckpoints, checkpoints_to_log
from rayspeed.trainers.scores import confusion_pairs
from rayspeed.trainers.wandb_media import classification_media


def kept(*steps_and_scores) -> list[CommittedCheckpoint]:
    """Ray's kept checkpoints ranked worst first, as (step, score) pairs."""
    return [CommittedCheckpoint(name=f"step_{step:08d}", path=f"/runs/x/step_{step:08d}",
                                uri=f"/runs/x/step_{step:08d}", step=step, epoch=step / 10, score=score)
            for step, score in steps_and_scores]


def logged(result) -> list[tuple[int, list[str]]]:
    return [(checkpoint.step, aliases) for checkpoint, aliases in result]


def test_best_logs_each_new_best_once():
    history = LoggedCheckpoints(set())
    assert logged(checkpoints_to_log(kept((10, 0.5)), policy="best", logged=history)) == [(10, ["best"])]
    history.add("step_00000010", ["best"])
    assert checkpoints_to_log(kept((20, 0.4), (10, 0.5)), policy="best", logged=history) == []  # 20 is worse
    assert logged(checkpoints_to_log(kept((10, 0.5), (30, 0.7)), policy="best", logged=history)) == [(30, ["best"])]


def test_all_logs_every_kept_checkpoint_in_step_order_and_none_logs_nothing():
    history = LoggedCheckpoints({"step_00000010"}, best="step_00000010")
    ranked = kept((30, 0.4), (10, 0.5), (20, 0.9))  # a driver that missed two commits catches up
    assert logged(checkpoints_to_log(ranked, policy="all", logged=history)) == [(20, ["best"]), (30, [])]
    assert checkpoints_to_log(ranked, policy="none", logged=LoggedCheckpoints(set())) == []


def test_best_moves_back_when_its_checkpoint_was_set_aside():
    """Step 30 held `best` and was found damaged on resume: the best kept one, logged before, gets it back."""
    history = LoggedCheckpoints({"step_00000010", "step_00000020", "step_00000030"}, best="step_00000030")
    ranked = kept((10, 0.5), (20, 0.6))
    assert logged(checkpoints_to_log(ranked, policy="best", logged=history)) == [(20, ["best"])]


def test_logged_checkpoints_follow_the_records_in_order():
    class Record:
        def __init__(self, name, metadata, aliases, kind="checkpoint"):
            self.name, self.metadata, self.aliases, self.type = name, metadata, aliases, kind

    records = [Record("checkpoint-x-1", '{"checkpoint": "step_00000010"}', ["latest", "best"]),
               Record("run-1-table", "{}", ["latest"], kind="run_table"),
               Record("checkpoint-y-2", '{"checkpoint": "step_00000099"}', ["best"]),  # another run's
               Record("checkpoint-x-1:v1", {"checkpoint": "step_00000020"}, ["latest", "best"])]  # the API's form
    history = LoggedCheckpoints.of(records, "checkpoint-x-1")
    assert history.names == {"step_00000010", "step_00000020"} and history.best == "step_00000020"


def test_confusion_media_hold_the_matrix_and_scikit_learns_per_class_scores():
    confusion = [[5, 1, 0], [2, 7, 1], [0, 0, 4]]
    actual, predicted = confusion_pairs(confusion)
    assert metrics.confusion_matrix(actual, predicted).tolist() == confusion
    media = classification_media("test", confusion, ["a", "b", "c"])
    table = media["test/per_class"]
    precision, recall, f1, support = metrics.precision_recall_fscore_support(actual, predicted, zero_division=0)
    assert table.columns == ["class", "precision", "recall", "f1", "support"]
    assert [row[0] for row in table.data] == ["a", "b", "c"]
    assert np.allclose([row[1:4] for row in table.data], np.stack([precision, recall, f1], axis=1))
    assert [row[4] for row in table.data] == support.tolist()
    chart = media["test/confusion_matrix"]
    counts = {(row[0], row[1]): row[2] for row in chart.table.data}
    assert counts[("b", "a")] == 2 and counts[("c", "c")] == 4


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_auto_records_offline_when_the_server_does_not_answer_and_online_fails():
    env = {"WANDB_API_KEY": "k", "WANDB_BASE_URL": f"http://127.0.0.1:{closed_port()}"}
    said = []
    assert wandb_mode(TrackingConfig(), env, say=said.append) == "offline"
    assert len(said) == 1 and "does not answer" in said[0] and "records this run offline" in said[0]
    with pytest.raises(ConfigError, match="tracking.mode: online, but the W&B server at"):
        wandb_mode(TrackingConfig(mode="online"), env, say=said.append)
    with pytest.raises(ConfigError, match="tracking.mode: online"):  # the shell's explicit choice is not auto
        wandb_mode(TrackingConfig(), {**env, "WANDB_MODE": "online"}, say=said.append)


def test_checkpoint_artifacts_need_wandb():
    with pytest.raises(ValueError, match="tracking.log_checkpoints: all logs checkpoints to W&B, but tracking.mode "
                                         "is disabled"):
        TrackingConfig(mode="disabled", log_checkpoints="all")
    assert TrackingConfig(mode="disabled").log_checkpoints is None  # the default alone is no error
    assert TrackingConfig().checkpoint_artifacts == "best"
    with pytest.raises(ConfigError, match="WANDB_MODE=disabled"):
        training_wandb_mode(TrackingConfig(log_checkpoints="best"), {"WANDB_MODE": "disabled"}, say=print)
    assert training_wandb_mode(TrackingConfig(), {"WANDB_MODE": "disabled"}, say=print) == "disabled"
    # What is made of a finished run later (evaluate, export, report) logs no checkpoints.
    assert wandb_mode(TrackingConfig(log_checkpoints="best"), {"WANDB_MODE": "disabled"}, say=print) == "disabled"
