"""End-to-end training on a real local Ray with real DeepSpeed (gloo, CPU) and real offline W&B."""

import json
from pathlib import Path

import pytest
import wandb_records
from conftest import experiment

from rayspeed.config import load_config
from rayspeed.trainers.driver import fit

pytestmark = pytest.mark.ray


def run_dir(tmp_path: Path, name: str) -> Path:
    return tmp_path / "runs" / name


def metrics(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stage", [0, 1, 3])
def test_two_workers_learn_digits_with_zero_stage(tmp_path, ray_address, stage):
    cfg = load_config(experiment(tmp_path, train={"zero_stage": stage}, run={"name": f"zero{stage}"}))
    summary = fit(cfg, address=ray_address, env={})
    assert summary.final["val_accuracy"] > 0.8  # chance is 0.1
    assert_checkpoint_has_both_ranks(run_dir(tmp_path, f"zero{stage}"), stage)


def test_zero2_run_learns_and_records_everything_once(tmp_path, ray_address, capfd):
    """ZeRO-2 run: learning, checkpoint contents, the metrics file, W&B offline, and no leaked secrets."""
    secret = "wandb-key-that-must-not-leak-4242"
    cfg = load_config(experiment(tmp_path, tracking={"mode": "offline"}, run={"name": "zero2"}))
    summary = fit(cfg, address=ray_address, env={"WANDB_API_KEY": secret})
    directory = run_dir(tmp_path, "zero2")

    assert summary.final["val_accuracy"] > 0.8 and summary.final["test_accuracy"] > 0.8
    assert summary.best_checkpoint and Path(summary.best_checkpoint).parent == directory
    assert_checkpoint_has_both_ranks(directory, 2)

    rows = metrics(directory)
    steps = [row["step"] for row in rows]
    steps_per_epoch = 22  # 1797 digits -> 1468 train rows -> 734 per worker -> 45 micro batches of 16 -> 22 steps
    expected = sorted({*range(5, 67, 5), *range(steps_per_epoch, 67, steps_per_epoch)})
    assert steps == expected
    assert all(key in rows[-1] for key in ("train_loss", "val_loss", "val_accuracy", "samples_per_s",
                                           "step_time_s", "data_wait_s", "epoch", "test_accuracy"))
    assert [row["step"] for row in rows if "val_loss" in row] == [22, 44, 66]

    run_id = json.loads((directory / "rayspeed.json").read_text())["wandb_run_id"]
    logged = wandb_records.history(directory / "wandb", run_id)
    assert [(r["_step"], r["train/loss"]) for r in logged] == [(r["step"], r["train_loss"]) for r in rows]
    assert wandb_records.config(directory / "wandb", run_id)["train"]["zero_stage"] == 2

    assert (directory / "loss_curves.png").stat().st_size > 0
    assert (directory / "confusion_matrix.png").stat().st_size > 0
    output = "".join(capfd.readouterr())
    assert "[rayspeed] step 22/66" in output  # per-epoch progress line
    for path in directory.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in output


def assert_checkpoint_has_both_ranks(directory: Path, stage: int) -> None:
    latest = sorted(directory.glob("step_*"))[-1]
    files = {p.name for p in latest.rglob("*")}
    assert {"rng_rank0.pt", "rng_rank1.pt", "train_state.json", "latest"} <= files
    if stage >= 1:
        assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= files
    if stage == 3:
        assert {f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in (0, 1)} <= files
    else:
        assert "mp_rank_00_model_states.pt" in files
