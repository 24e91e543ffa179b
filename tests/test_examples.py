"""The picture and text examples as users run them (`rayspeed train examples/<name>.yaml`), shortened
with overrides to a few dozen steps: their data installed by examples/install_data.sh, the built-in
Fashion-MNIST reader, the Moby Dick folder, and the lines the run ends with."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def run_example(name: str, tmp_path: Path, *overrides: str) -> tuple[list[str], dict]:
    result = subprocess.run(
        [sys.executable, "-m", "rayspeed", "train", str(EXAMPLES / f"{name}.yaml"), f"run.storage_path={tmp_path}",
         "tracking.mode=disabled", *overrides],
        capture_output=True, text=True, timeout=900, cwd=EXAMPLES.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert all(line.startswith("[rayspeed] ") for line in lines), "\n".join(lines)
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    return lines, summary


def test_fashion_mnist_example_learns_from_augmented_pictures(tmp_path):
    lines, summary = run_example("images", tmp_path, "train.epochs=null", "train.max_steps=30",
                                 "train.warmup_steps=5")
    assert any("data: 70000 rows read" in line and "1x28x28 pictures, 10 classes" in line for line in lines), lines
    assert summary["final"]["test_accuracy"] > 0.6, summary["final"]


def test_moby_dick_example_beats_the_unigram_baseline(tmp_path):
    lines, summary = run_example("lm", tmp_path, "train.max_steps=40", "train.warmup_steps=5",
                                 "checkpoint.every_n_steps=20")
    assert any("blocks of 128, 257 tokens" in line for line in lines), lines
    baseline = summary["baselines"]["val_perplexity_unigram"]
    assert 20 < baseline < 40  # English text, byte by byte
    assert summary["final"]["val_perplexity"] < 0.8 * baseline, (summary["final"], baseline)
    assert any(line.startswith("[rayspeed] baseline: val_perplexity_unigram") for line in lines), lines


def test_weather_example_forecasts_better_than_the_last_value(tmp_path):
    lines, summary = run_example("timeseries", tmp_path, "train.epochs=3")
    assert any("windows of 24 rows x 8 inputs, regression" in line for line in lines), lines
    final, baselines = summary["final"], summary["baselines"]
    assert final["test_mae"] < baselines["test_mae_last_value"], (final, baselines)
    # Early stopping's patience (3) is never met in 3 epochs: the run goes to its end.
    assert final["done"] and "stopped_early" not in final and final["step"] == summary["steps"]
    assert any(line.startswith("[rayspeed] baseline: test_mae_last_value") for line in lines), lines


def test_spam_example_classifies_emails_better_than_the_majority(tmp_path):
    lines, summary = run_example("text", tmp_path, "data.text.block_size=64", "train.epochs=null",
                                 "train.max_steps=60", "checkpoint.every_n_steps=20", "train.warmup_steps=5")
    assert any("data: 6046 documents read" in line and "first 64 tokens, 2 classes" in line for line in lines), lines
    final, baselines = summary["final"], summary["baselines"]
    assert baselines["test_f1_majority"] < 0.45 and final["test_f1"] > baselines["test_f1_majority"] + 0.2, (
        final, baselines)
