"""Bad experiment files through the real `rayspeed` command: exit 2, one short line naming the field,
and Ray is never imported (so never started)."""

import socket
import subprocess
import sys
import time

import pytest
from conftest import experiment

PROBE = ("import sys; from rayspeed.cli import main; code = main(sys.argv[1:]); "
         "print('ray imported:', 'ray' in sys.modules); sys.exit(code)")


def rayspeed(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "sections, field",
    [
        ({"train": {"lr": 1e-3, "lrr": 1}}, "train.lrr: unknown key; did you mean 'lr'?"),
        ({"trainn": {"lr": 1e-3}}, "trainn: unknown section; did you mean 'train'?"),
        ({"train": {"lr": -0.1}}, "train.lr: Input should be greater than 0"),
        ({"data": {"source": "/nowhere/data.parquet"}}, "data.source: no such file or directory"),
        ({"model": {"name": "resnet"}}, "model.name: Input should be 'mlp', 'cnn', 'rnn' or 'transformer'"),
        ({"model": {"name": "mlp", "args": {"hidden": [3]}}}, "model.args.hidden: unknown key; did you mean"),
        ({"train": {"precision": "bf16"}}, "train.precision: bf16 runs on GPU workers only"),
        ({"model": {"name": None, "factory": "absent_module:build"}}, "model.factory: cannot import 'absent_module'"),
        ({"train": {"zero_stage": 4}}, "train.zero_stage: Input should be 0, 1, 2 or 3"),
    ],
)
def test_bad_config_exits_2_naming_the_field_before_ray(tmp_path, sections, field):
    result = rayspeed("train", str(experiment(tmp_path, **sections)))
    assert result.returncode == 2
    assert field in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # short: no traceback
    assert "ray imported: False" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_bad_override_is_reported_like_the_file(tmp_path):
    result = rayspeed("train", str(experiment(tmp_path)), "train.zero_stage=4")
    assert result.returncode == 2 and "train.zero_stage" in result.stderr


def test_config_show_prints_resolved_and_deepspeed_config(tmp_path):
    result = subprocess.run(["rayspeed", "config", "show", str(experiment(tmp_path)), "train.max_steps=30",
                             "train.epochs=null"], capture_output=True, text=True, check=True)
    assert "grad_accumulation: 2" in result.stdout
    assert '"gradient_accumulation_steps": 2' in result.stdout
    assert "max_steps: 30" in result.stdout


def test_overrides_may_follow_the_options(tmp_path):
    result = rayspeed("config", "validate", str(experiment(tmp_path)), "train.lr=0.5")
    assert result.returncode == 0
    result = rayspeed("train", str(experiment(tmp_path)), "--resume", "train.zero_stage=7")
    assert result.returncode == 2 and "train.zero_stage: Input should be 0, 1, 2 or 3" in result.stderr


@pytest.mark.ray
def test_model_that_cannot_hold_the_data_is_a_config_error_that_frees_the_run_name(tmp_path, ray_address):
    """Found on the driver once the data is read (meta-device build), before any worker starts."""
    config = experiment(tmp_path, model={"name": "cnn", "args": {"image_shape": [1, 4, 4]}})
    result = subprocess.run([sys.executable, "-m", "rayspeed", "train", str(config), "--address", ray_address],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr
    assert "model.args.image_shape: [1, 4, 4] does not hold the data's 64 features" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "tiny").exists()  # the corrected config may use the name


@pytest.mark.ray
def test_bad_data_is_one_line_naming_file_and_column_and_leaves_no_run(tmp_path, ray_address):
    table = tmp_path / "rows.csv"
    table.write_text("x,label\n" + "".join(f"{i}.5,{'ab'[i % 2]}\n" for i in range(30)) + "lots,a\n")
    config = experiment(tmp_path, data={"source": str(table)})
    result = subprocess.run([sys.executable, "-m", "rayspeed", "train", str(config), "--address", ray_address],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr
    assert f"data.source: {table}: column 'x' holds 'lots', not a number" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "tiny").exists()  # nothing a later run could take for a checkpoint


def test_online_wandb_with_a_dead_server_fails_in_seconds_before_ray(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    started = time.monotonic()
    result = rayspeed("train", str(experiment(tmp_path, tracking={"mode": "online"})))
    assert time.monotonic() - started < 10
    assert result.returncode == 2, result.stderr
    assert f"the W&B server at http://127.0.0.1:{port} (WANDB_BASE_URL) does not answer" in result.stderr
    assert "ray imported: False" in result.stdout and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("env, mode", [
    ({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, "offline"),  # the shell's explicit choice wins
    ({"WANDB_API_KEY": "k"}, "online"),
    ({}, "offline"),  # no key: nothing could be sent
])
def test_tracking_mode_auto_follows_the_environment(env, mode):
    from rayspeed.config.tracking import TrackingConfig

    assert TrackingConfig().mode_in(env) == mode
