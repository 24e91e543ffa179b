"""`rayspeed tune` end to end on the session's real Ray: ASHA with 2-worker DeepSpeed trials, a sweep
killed with SIGKILL and resumed, and PBT exploits that continue from a peer's checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import artifact_versions, experiment, logged_table, metrics, run_dir

from rayspeed.trainers import wandb_records

pytestmark = pytest.mark.ray


def rayspeed(*args, address: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rayspeed", *map(str, args), "--address", address],
                          capture_output=True, text=True, timeout=timeout)


def sweep_trials(directory: Path) -> dict[str, dict]:
    return {trial["trial"]: trial for trial in json.loads((directory / "sweep.json").read_text())}


def wandb_run(trial_run: Path) -> tuple[str | None, bool]:
    """The W&B group of a trial's offline run, and whether the run was finished (an exit record)."""
    run_id = json.loads((trial_run / "rayspeed.json").read_text())["wandb_run_id"]
    group, finished = None, False
    for run_file in (trial_run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"):
        for record in wandb_records.records(run_file):
            kind = record.WhichOneof("record_type")
            group = record.run.run_group if kind == "run" else group
            finished = finished or kind == "exit"
    return group, finished


def test_asha_stops_poor_trials_early_and_closes_them(tmp_path, ray_address):
    config = experiment(tmp_path, run={"name": "asha"}, tune={
        "num_samples": 1, "search": "grid", "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 4},
        # Two learning rates that cannot learn digits in an epoch. One trial at a time: each pauses
        # at epoch 1 until all 4 are in, then the best 4 // 4 = 1 resumes and the others stop.
        "space": {"train.lr": {"grid": [3e-3, 1e-5, 2e-3, 1e-6]}}})
    result = rayspeed("tune", config, address=ray_address)
    assert result.returncode == 0, result.stderr + result.stdout
    sweep = run_dir(tmp_path, "asha")
    trials = sweep_trials(sweep)
    assert len(trials) == 4
    stopped = [t for t in trials.values() if t["status"] == "stopped early"]
    assert stopped and any(t["status"] == "finished" for t in trials.values())
    assert "stopped early" in result.stdout
    for trial in trials.values():
        run = sweep / "trials" / trial["trial"]
        rows = metrics(run)
        # A stopped trial ended at the epoch ASHA judged: checkpoint, summary and W&B run closed.
        assert rows[-1]["epoch"] == len(trial["history"]) == max(row["epoch"] for row in trial["history"])
        assert (run / "summary.json").exists() and list(run.glob("step_*"))
        assert wandb_run(run) == ("asha", True)
    assert sorted(len(t["history"]) for t in trials.values()) == [1, 1, 1, 3]
    assert "paused after epoch 1" in result.stdout and "promoted: resuming" in result.stdout
    finished = sweep / "trials" / next(t["trial"] for t in trials.values() if t["status"] == "finished")
    assert len(list((finished / "wandb").glob("offline-run-*"))) == 2  # paused, then resumed: one W&B run, twice
    assert [row["epoch"] for row in metrics(finished) if "val_accuracy" in row] == [1, 2, 3]
    best = json.loads((sweep / "best.json").read_text())
    assert best["values"]["train.lr"] in (3e-3, 2e-3) and Path(best["checkpoint"]).is_dir()
    best_config = yaml.safe_load((sweep / "best_config.yaml").read_text())
    assert best_config["train"]["lr"] == best["values"]["train.lr"] and best_config["tune"] is None
    assert (sweep / "sweep_values.png").stat().st_size > 0 and (sweep / "sweep_curves.png").stat().st_size > 0

    # W&B: the group holds one run per trial (above) and the sweep's own run with the trial table; the
    # best trial's best checkpoint artifact carries `sweep-best`.
    sweep_id = json.loads((sweep / "rayspeed.json").read_text())["wandb_run_id"]
    assert wandb_run(sweep) == ("asha", True)
    assert f"W&B: offline; upload it with `wandb sync {sweep / 'wandb'}/offline-run-*-{sweep_id}`" in result.stdout
    table = logged_table(sweep / "wandb", sweep_id, "sweep/trials")
    assert sorted(row[table["columns"].index("trial")] for row in table["data"]) == sorted(trials)
    assert {"train.lr", "best val_accuracy", "status", "last val_loss"} <= set(table["columns"])
    best_run = sweep / "trials" / Path(best["checkpoint"]).parent.name
    best_id = json.loads((best_run / "rayspeed.json").read_text())["wandb_run_id"]
    versions = artifact_versions([*wandb_records.artifacts(best_run / "wandb", best_id),
                                  *wandb_records.artifacts(sweep / "wandb", sweep_id)])
    tagged = [v["metadata"]["checkpoint"] for v in versions[f"checkpoint-{best_run.name}-{best_id}"]
              if "sweep-best" in v["aliases"]]
    assert tagged == [Path(best["checkpoint"]).name]


def test_killed_sweep_resumes_without_running_finished_trials_again(tmp_path, ray_address):
    config = experiment(tmp_path, run={"name": "resumable"}, train={"epochs": 2},
                        tune={"num_samples": 1, "search": "grid", "space": {"train.lr": {"grid": [3e-3, 1e-3]}}})
    sweep = run_dir(tmp_path, "resumable")
    driver = subprocess.Popen([sys.executable, "-m", "rayspeed", "tune", str(config), "--address", ray_address],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finished = []
    deadline = time.monotonic() + 600
    while not finished and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.5)
        finished = [run for run in (sweep / "trials").glob("*") if (run / "summary.json").exists()]
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert len(finished) == 1, "one trial (of two, run one at a time) should have finished before the kill"
    before = {run.name: (run / "metrics.jsonl").read_text() for run in finished}

    result = rayspeed("tune", config, "--resume", address=ray_address)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "continuing sweep 'resumable'" in result.stdout
    trials = sweep_trials(sweep)
    assert len(trials) == 2 and all(t["status"] == "finished" for t in trials.values())
    for name, text in before.items():
        assert (sweep / "trials" / name / "metrics.jsonl").read_text() == text
        assert "resuming" not in (sweep / "trials" / name / "rayspeed.log").read_text()
    assert sorted(p.name for p in (sweep / "trials").iterdir()) == sorted(trials)


def test_pbt_exploit_continues_from_the_peers_checkpoint(tmp_path, ray_address):
    # Two trials side by side and none pending (pbt pauses running trials to start pending ones).
    # The good trial gets its checkpoint at a perturbation point (epochs 2 and 4) where both have a
    # score; the poor one copies it at its next. Trials start apart (one once ran 2 epochs of 22 steps
    # ahead and never found a checkpoint to copy): epochs of 90 steps leave room for that, while each
    # copy restarts a trial (a point every epoch, or 3 points, made this test 2-3 times longer).
    config = experiment(tmp_path, run={"name": "pbt"},
                        train={"epochs": 6, "global_batch": 16, "micro_batch_per_worker": 16},
                        scaling={"num_workers": 1}, tune={
                            "num_samples": 1, "max_concurrent_trials": 2,
                            "scheduler": {"name": "pbt", "perturbation_interval": 2, "quantile_fraction": 0.5},
                            "space": {"train.lr": {"grid": [3e-3, 1e-5]}}})
    result = rayspeed("tune", config, address=ray_address)
    assert result.returncode == 0, result.stderr + result.stdout
    sweep = run_dir(tmp_path, "pbt")
    exploits = [run for run in (sweep / "trials").iterdir() if "-from-" in run.name]
    assert exploits, "no trial copied a peer"
    trials = sweep_trials(sweep)
    for run in exploits:
        trial = run.name.partition("-from-")[0]
        source = json.loads((run / "warm_start" / "sweep_source.json").read_text())
        assert run.name == f"{trial}-from-{source['trial']}-step{source['step']}"
        peer_rows = {row["step"]: row for row in metrics(sweep / "trials" / source["run"])}
        first = next(row for row in metrics(run) if "val_accuracy" in row)  # its first epoch end
        # The copy trains on from the peer's step: its first row is the peer's next epoch, and its
        # accuracy is the peer's level, not the exploiting trial's own.
        assert first["step"] > source["step"] and first["step"] in peer_rows
        assert abs(first["val_accuracy"] - peer_rows[first["step"]]["val_accuracy"]) < 0.15
        history = trials[trial]["history"]
        jump = next(i for i, row in enumerate(history) if row["run"] == run.name)
        assert history[jump]["step"] == first["step"]
        assert jump > 0  # the trial had reported epochs of its own before it copied the peer
        if history[jump - 1]["run"] == trial and history[jump - 1]["val_accuracy"] < 0.5:
            # the poor trial's own run (lr 1e-5) -> the good peer's weights. Later, once both are at
            # the good level, either may copy the other without a jump.
            assert history[jump]["val_accuracy"] > history[jump - 1]["val_accuracy"] + 0.3
        assert wandb_run(run) == ("pbt", True)
    poor = min(trials, key=lambda name: trials[name]["history"][0]["val_accuracy"])
    assert any(run.name.startswith(f"{poor}-from-") for run in exploits), "the poor trial never copied its peer"
