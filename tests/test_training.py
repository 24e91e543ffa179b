"""End-to-end training on a real local Ray with real DeepSpeed (gloo, CPU) and real offline W&B."""

import json
from pathlib import Path

import pytest
from conftest import artifact_versions, experiment, logged_table, metrics, run_dir, train, wandb_config

from rayspeed.trainers import wandb_records

pytestmark = pytest.mark.ray

STEPS_PER_EPOCH = 22  # 1797 digits -> 1446 train rows -> 723 per worker -> 45 micro batches of 16 -> 22 steps


def digits_sorted_by_label(directory: Path) -> dict:
    """The digits as 10 CSV files, each holding one class: the data section reading them (the train
    split streamed every epoch)."""
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame.rename(columns={"target": "label"})
    directory.mkdir()
    for label, rows in frame.groupby("label"):
        rows.to_csv(directory / f"class_{label}.csv", index=False)
    return {"source": str(directory)}


@pytest.mark.parametrize("stage, train_section, sorted_files", [
    (0, {}, True),  # every file one class: the epoch's shuffle must mix them
    (1, {"optimizer": "sgd", "lr": 0.1, "lr_schedule": "linear"}, False),  # SGD is not a ZeRO-tested optimizer
    (3, {"lr_schedule": "constant"}, False),
])
def test_two_workers_learn_digits_with_zero_stage(tmp_path, ray_address, stage, train_section, sorted_files):
    """No warmup_steps anywhere: DeepSpeed's own schedulers refuse 0, rayspeed's starts at the peak lr."""
    data = digits_sorted_by_label(tmp_path / "sorted") if sorted_files else {}
    config = experiment(tmp_path, train={"zero_stage": stage, **train_section}, run={"name": f"zero{stage}"},
                        tracking={"mode": "disabled"}, data=data)
    summary = train(config, ray_address, wandb_mode="disabled")
    assert summary.final["val_accuracy"] > 0.8  # chance is 0.1
    rows = metrics(run_dir(tmp_path, f"zero{stage}"))
    assert rows[0]["lr"] >= 0.9 * train_section.get("lr", 3e-3)  # step 5: no warmup, barely decayed
    assert_checkpoint_has_both_ranks(run_dir(tmp_path, f"zero{stage}"), stage)


def test_zero2_run_learns_and_records_everything_once(tmp_path, ray_address, capfd, monkeypatch):
    """ZeRO-2 run: learning, checkpoints kept and best, live W&B rows, saved preprocessing, no leaked secrets."""
    secret = "wandb-key-that-must-not-leak-4242"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    summary = train(experiment(tmp_path, run={"name": "zero2"}), ray_address)
    directory = run_dir(tmp_path, "zero2")

    assert summary.final["val_accuracy"] > 0.8 and summary.final["test_accuracy"] > 0.8
    assert_checkpoint_has_both_ranks(directory, 2)

    rows = metrics(directory)
    steps = [row["step"] for row in rows]
    epoch_ends = list(range(STEPS_PER_EPOCH, 67, STEPS_PER_EPOCH))
    assert steps == sorted({*range(5, 67, 5), *epoch_ends})
    assert all(key in rows[-1] for key in ("train_loss", "val_loss", "val_accuracy", "samples_per_s",
                                           "step_time_s", "data_wait_s", "epoch", "test_accuracy", "lr"))
    assert [row["step"] for row in rows if "val_loss" in row] == epoch_ends

    # checkpoint.keep = 2 by val_accuracy (max): the two best epoch-end checkpoints and the latest.
    scores = {row["step"]: row["val_accuracy"] for row in rows if "val_accuracy" in row}
    best_two = sorted(scores, key=lambda step: -scores[step])[:2]
    kept = {int(path.name.removeprefix("step_")) for path in directory.glob("step_*")}
    assert kept == {*best_two, epoch_ends[-1]}
    best_step = int(Path(summary.best_checkpoint).name.removeprefix("step_"))
    assert scores[best_step] == max(scores.values())
    assert summary.best_metrics["val_accuracy"] == max(scores.values())

    # W&B got every logged row live (many more rows than the 3 reports), each step once.
    run_id = json.loads((directory / "rayspeed.json").read_text())["wandb_run_id"]
    logged = wandb_records.history(directory / "wandb", run_id)
    assert [(r["_step"], r["train/loss"]) for r in logged] == [(r["step"], r["train_loss"]) for r in rows]
    assert len(logged) > 3 * len(epoch_ends)
    assert wandb_config(directory / "wandb", run_id)["train"]["zero_stage"] == 2
    data = wandb_config(directory / "wandb", run_id, kind="summary")
    assert data["data/rows_read"] == 1797 and data["data/rows_dropped/no label"] == 0
    assert sum(data[f"data/split_rows/{split}"] for split in ("train", "val", "test")) == 1797

    # Checkpoints in W&B (log_checkpoints: best): each new best uploaded once, `best` on the run's best
    # checkpoint and `latest` on the last one logged; the test split as a confusion chart and a table.
    versions = artifact_versions(wandb_records.artifacts(directory / "wandb", run_id))[f"checkpoint-zero2-{run_id}"]
    logged_steps = [version["metadata"]["step"] for version in versions]
    assert logged_steps == sorted(logged_steps) and logged_steps[-1] == best_step
    assert [scores[step] for step in logged_steps] == sorted(scores[step] for step in logged_steps)  # each a new best
    assert [v["metadata"]["step"] for v in versions if "best" in v["aliases"]] == [best_step]
    assert [v["metadata"]["step"] for v in versions if "latest" in v["aliases"]] == [best_step]
    assert versions[-1]["metadata"]["val_accuracy"] == max(scores.values())
    assert all(entry.local_path and not entry.ref for entry in versions[-1]["entries"])  # uploaded
    best_dir = directory / f"step_{best_step:08d}"
    assert {entry.path for entry in versions[-1]["entries"]} == {
        str(p.relative_to(best_dir)) for p in best_dir.rglob("*") if p.is_file()}
    chart = logged_table(directory / "wandb", run_id, "test/confusion_matrix_table")
    assert sum(count for *_, count in chart["data"]) == json.loads((directory / "data_report.json").read_text())[
        "split_rows"]["test"]
    assert {(int(a), int(p)): n for a, p, n in chart["data"]} == {
        (i, j): n for i, row in enumerate(rows[-1]["test_confusion"]) for j, n in enumerate(row)}
    assert len(logged_table(directory / "wandb", run_id, "test/per_class")["data"]) == 10
    assert summary.wandb.startswith(f"offline; upload it with `wandb sync {directory / 'wandb'}/offline-run-*-")

    preprocessing = json.loads((directory / "preprocessing.json").read_text())
    assert len(preprocessing["numeric"]) == 64 and preprocessing["classes"] == list(range(10))
    spec = json.loads((directory / "input_spec.json").read_text())
    assert spec["feature_shape"] == [64] and spec["task"] == "classification"
    latest = max(directory.glob("step_*"))
    assert json.loads((latest / "preprocessing.json").read_text()) == preprocessing

    assert (directory / "loss_curves.png").stat().st_size > 0
    assert (directory / "confusion_matrix.png").stat().st_size > 0
    output = "".join(capfd.readouterr())
    for path in directory.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in output


def assert_checkpoint_has_both_ranks(directory: Path, stage: int) -> None:
    latest = sorted(directory.glob("step_*"))[-1]
    files = {p.name for p in latest.rglob("*")}
    assert {"rng_rank0.pt", "rng_rank1.pt", "train_state.json", "latest", "input_spec.json"} <= files
    if stage >= 1:
        assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= files
    if stage == 3:
        assert {f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in (0, 1)} <= files
    else:
        assert "mp_rank_00_model_states.pt" in files
