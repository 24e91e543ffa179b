"""The README's main job, as the user runs it: `rayspeed train examples/digits.yaml` on an embedded Ray."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "examples" / "digits.yaml"


@pytest.mark.ray
@pytest.mark.slow
def test_digits_example_reaches_95_percent_test_accuracy(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rayspeed", "train", str(EXAMPLE), f"run.storage_path={tmp_path}"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "embedded local Ray" in result.stdout
    summary = json.loads((tmp_path / "digits" / "summary.json").read_text())
    assert summary["final"]["test_accuracy"] >= 0.95
    assert f"best checkpoint: {tmp_path}/digits/step_" in result.stdout
    assert Path(summary["best_checkpoint"]).is_dir()
