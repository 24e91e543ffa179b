"""`rayspeed report` on a run directory and on a sweep directory: the PNGs decode at their drawn size
with content on them, and the page shows them and the numbers."""

import json
import math
from pathlib import Path

import numpy as np
from conftest import rayspeed_command
from PIL import Image

from rayspeed.runs import sweep_plots


def assert_drawn(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size, (path, image.size)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert (pixels < 128).mean() > 0.005 and pixels.std() > 10, path  # lines and text, not a blank canvas


def test_a_run_report_draws_curves_lr_throughput_and_the_confusion_matrix(tmp_path):
    run = tmp_path / "digits"
    run.mkdir()
    rows = [{"step": s, "epoch": s / 22, "lr": 3e-3 * 0.5 * (1 + math.cos(math.pi * s / 66)),
             "train_loss": 2.3 * math.exp(-s / 20), "samples_per_s": 4000 + 10 * s} for s in range(5, 67, 5)]
    for row in rows:
        if row["step"] % 10 == 0:
            row.update(val_loss=2.3 * math.exp(-row["step"] / 25), val_accuracy=1 - math.exp(-row["step"] / 15))
    rows[-1].update(done=True, test_accuracy=0.95, test_confusion=np.diag([17] * 10).tolist())
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run / "input_spec.json").write_text(json.dumps({"classes": list(range(10))}))

    result = rayspeed_command("report", str(run))
    assert result.returncode == 0, result.stderr
    report = run / "report"
    assert result.stdout.split() == [str(report / name) for name in (
        "index.html", "curves.png", "learning_rate.png", "throughput.png", "confusion_matrix.png")]
    assert_drawn(report / "curves.png", (1200, 400))
    assert_drawn(report / "learning_rate.png", (600, 350))
    assert_drawn(report / "throughput.png", (600, 350))
    assert_drawn(report / "confusion_matrix.png", (700, 700))
    page = (report / "index.html").read_text()
    assert all(f'<img src="{name}"' in page for name in ("curves.png", "learning_rate.png", "throughput.png",
                                                           "confusion_matrix.png"))
    assert "<td>0.95</td>" in page and "<th>test_accuracy</th>" in page


def test_a_sweep_report_shows_every_trial_and_the_sweeps_plots(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    trials = [{"trial": f"t{i}", "status": status, "values": {"train.lr": lr}, "best": best, "best_epoch": 2,
               "history": [{"epoch": e, "val_accuracy": best * e / 3} for e in (1, 2, 3)]}
              for i, (status, lr, best) in enumerate([("finished", 1e-3, 0.9), ("stopped early", 1e-2, 0.6)])]
    (sweep / "sweep.json").write_text(json.dumps(trials))
    (sweep / "sweep_curves.png").write_bytes(sweep_plots.learning_curves(trials, metric="val_accuracy",
                                                                         best_trial="t0", title="sweep"))
    (sweep / "sweep_values.png").write_bytes(sweep_plots.metric_by_value(
        trials, paths=["train.lr"], log_paths={"train.lr"}, metric="val_accuracy", title="sweep"))

    result = rayspeed_command("report", str(sweep))
    assert result.returncode == 0, result.stderr
    assert_drawn(sweep / "report" / "sweep_curves.png", (700, 450))
    assert_drawn(sweep / "report" / "sweep_values.png", (450, 400))
    page = (sweep / "report" / "index.html").read_text()
    assert "<h2>2 trials</h2>" in page and "<td>stopped early</td>" in page and "<th>train.lr</th>" in page
    assert '<img src="sweep_curves.png"' in page and '<img src="sweep_values.png"' in page


def test_a_directory_without_results_is_refused(tmp_path):
    result = rayspeed_command("report", str(tmp_path))
    assert result.returncode == 2 and "nothing to report" in result.stderr
