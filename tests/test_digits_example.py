"""The README's main job, as the user runs it: `rayspeed train examples/digits.yaml` on an embedded Ray,
its output piped (not a terminal): a line per epoch, the results and paths, and nothing of Ray's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "examples" / "digits.yaml"


@pytest.mark.ray
@pytest.mark.slow
def test_digits_example_reaches_95_percent_test_accuracy_in_a_quiet_console(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rayspeed", "train", str(EXAMPLE), f"run.storage_path={tmp_path}"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) < 40, "\n".join(lines)
    assert all(line.startswith("[rayspeed] ") for line in lines), "\n".join(lines)
    assert "[rayspeed] cluster: embedded local Ray" in lines
    for epoch in range(1, 16):
        assert any(f"| epoch {epoch}.00 |" in line for line in lines), epoch
    summary = json.loads((tmp_path / "digits" / "summary.json").read_text())
    assert summary["final"]["test_accuracy"] >= 0.95
    assert f"[rayspeed] best checkpoint: {tmp_path}/digits/step_" in result.stdout
    assert f"[rayspeed] wrote: {tmp_path}/digits/rayspeed.log" in lines
    assert Path(summary["best_checkpoint"]).is_dir()
    log = (tmp_path / "digits" / "rayspeed.log").read_text()
    assert "Started a local Ray instance" in log and "RayTrainWorker" in log  # Ray's output, kept for later
