"""The run directory without Ray: atomic commits under real SIGKILLs, atomic claims by racing
processes, and what `run.resume` decides for an existing run."""

import json
import multiprocessing
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import TINY_DIGITS

from rayspeed.config.load import validate
from rayspeed.errors import RunStateError
from rayspeed.runs.guard import claim_run
from rayspeed.runs.layout import CONFIG_FILE, IDENTITY_FILE, RAY_SNAPSHOT
from rayspeed.runs.metrics_log import MetricsLog, read_metrics
from rayspeed.runs.storage import RunStorage

WRITER = """
import sys
from rayspeed.runs.metrics_log import MetricsLog
from rayspeed.runs.storage import RunStorage
log = MetricsLog(RunStorage.open(sys.argv[1], "run"))
step = log.last_step
print("ready", flush=True)
while True:
    step += 1
    log.append([{"step": step, "train_loss": 1.0 / step, "padding": "x" * 3000}])
"""


def test_metrics_log_survives_sigkill_at_any_moment(tmp_path):
    storage = RunStorage.open(str(tmp_path), "run")
    for kill in range(12):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.037 * kill)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        steps = [row["step"] for row in read_metrics(storage)]  # every line parses
        assert steps == list(range(1, len(steps) + 1)), f"kill {kill}: steps not contiguous"
    assert len(steps) > 12


def test_metrics_log_commits_each_step_once(tmp_path):
    log = MetricsLog(RunStorage.open(str(tmp_path), "run"))
    assert [r["step"] for r in log.append([{"step": 5}, {"step": 10}])] == [5, 10]
    assert [r["step"] for r in log.append([{"step": 10}, {"step": 15}])] == [15]  # a restarted group repeats 10
    assert [r["step"] for r in read_metrics(RunStorage.open(str(tmp_path), "run"))] == [5, 10, 15]


def test_step_0_is_committed_only_as_a_runs_first_row(tmp_path):
    """Step 0: the score of `model.init_from`'s weights before training."""
    log = MetricsLog(RunStorage.open(str(tmp_path), "run"))
    assert [r["step"] for r in log.append([{"step": 0}, {"step": 5}])] == [0, 5]
    assert log.append([{"step": 0}]) == []


def _claim(args) -> str:
    storage_path, config, barrier = args
    barrier.wait()
    try:
        claim_run(validate(config, source="race"), RunStorage.open(storage_path, config["run"]["name"]))
        return "claimed"
    except RunStateError as error:
        return str(error)


def test_two_commands_starting_one_new_run_cannot_both_claim_it(tmp_path):
    context = multiprocessing.get_context("fork")
    for attempt in range(6):
        config = {**TINY_DIGITS, "run": {"name": f"race-{attempt}"}}
        barrier = context.Manager().Barrier(2)
        with context.Pool(2) as pool:
            outcomes = pool.map(_claim, [(str(tmp_path), config, barrier)] * 2)
        assert outcomes.count("claimed") == 1, outcomes
        loser = next(outcome for outcome in outcomes if outcome != "claimed")
        assert "already exists" in loser or "claimed" in loser


def _create(args) -> bool:
    root, barrier, index = args
    barrier.wait()
    return RunStorage.open(root, "contested").create_exclusively(f"claimant {index}", "rayspeed.json")


def test_exclusive_create_lets_exactly_one_of_many_racing_processes_win(tmp_path):
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        root = str(tmp_path / f"attempt{attempt}")
        barrier = context.Manager().Barrier(4)
        with context.Pool(4) as pool:
            won = pool.map(_create, [(root, barrier, index) for index in range(4)])
        assert won.count(True) == 1, won
        winner = won.index(True)
        assert RunStorage.open(root, "contested").read_text("rayspeed.json") == f"claimant {winner}"


def test_a_run_directory_with_an_incomplete_claim_is_refused_not_resumed(tmp_path, monkeypatch):
    monkeypatch.setattr("rayspeed.runs.guard.CLAIM_WAIT_S", 0.01)
    cfg, storage = claimed(tmp_path, resume="auto")
    storage.write("", "rayspeed.json.1234.tmp")  # another process is between creating the folder and its claim
    with pytest.raises(RunStateError, match="no complete claim"):
        claim_run(cfg, storage)


def claimed(tmp_path, **run) -> tuple:
    config = {**TINY_DIGITS, "run": {"name": "existing", "storage_path": str(tmp_path), **run}}
    storage = RunStorage.open(str(tmp_path), "existing")
    return validate(config, source="test"), storage


def test_new_run_is_claimed_with_its_config_and_identity(tmp_path):
    cfg, storage = claimed(tmp_path)
    start = claim_run(cfg, storage)
    assert not start.resuming and len(start.wandb_run_id) == 8
    assert json.loads(storage.read_text(IDENTITY_FILE))["wandb_run_id"] == start.wandb_run_id
    assert yaml.safe_load(storage.read_text(CONFIG_FILE))["train"]["lr"] == 3e-3


def test_resume_auto_continues_an_existing_run_and_starts_an_absent_one(tmp_path):
    cfg, storage = claimed(tmp_path, resume="auto")
    first = claim_run(cfg, storage)
    assert not first.resuming
    again = claim_run(cfg, storage)
    assert again.resuming and again.wandb_run_id == first.wandb_run_id and "step 0" in again.message
    storage.write("{}", RAY_SNAPSHOT)
    assert "from its latest checkpoint" in claim_run(cfg, storage).message


def test_a_run_saved_by_an_older_rayspeed_still_resumes(tmp_path):
    cfg, storage = claimed(tmp_path, resume="auto")
    claim_run(cfg, storage)
    saved = yaml.safe_load(storage.read_text(CONFIG_FILE))
    saved["data"]["text"]["tokenizer"] = "<redacted>"  # before the word `tokenizer` was told from `token`
    del saved["model"]["init_from"], saved["model"]["freeze"]  # before they existed
    storage.write(yaml.safe_dump(saved), CONFIG_FILE)
    assert claim_run(cfg, storage).resuming
    saved["model"].pop("args")
    storage.write(yaml.safe_dump(saved), CONFIG_FILE)
    with pytest.raises(RunStateError, match=r"model.args: '\(not saved\)' -> \{'hidden_sizes'"):
        claim_run(cfg, storage)  # a key missing with a real value is a difference


def test_existing_run_is_refused_without_resume_and_with_a_changed_config(tmp_path):
    cfg, storage = claimed(tmp_path)
    claim_run(cfg, storage)
    with pytest.raises(RunStateError, match="already exists.*--resume"):
        claim_run(cfg, storage)
    changed, _ = claimed(tmp_path, resume="required")
    changed = validate({**changed.model_dump(mode="json", exclude_unset=True),
                        "train": {**TINY_DIGITS["train"], "lr": 0.1, "epochs": 9}}, source="test")
    with pytest.raises(RunStateError, match=r"train.lr: 0.003 -> 0.1") as caught:
        claim_run(changed, storage)
    assert "train.epochs" not in str(caught.value)  # more epochs is a resumable change
