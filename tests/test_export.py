"""`rayspeed export` of a 2-worker ZeRO-3 run: the export loads with torch alone (no Ray, no DeepSpeed
imported) and, applied to the raw rows of the held-back test split through its own preprocessing,
gives exactly the test accuracy the run measured with DeepSpeed on Ray."""

import json
import subprocess
import sys

import pytest
from conftest import experiment, metrics, rayspeed_command, run_dir, train

pytestmark = pytest.mark.ray

LOAD_AND_SCORE = """
import json, sys
import torch
from rayspeed.config import load_config
from rayspeed.datasets.builtin import load_builtin
from rayspeed.datasets.columns import plan_columns
from rayspeed.datasets.encoding import model_rows
from rayspeed.datasets.rows import tag_rows
from rayspeed.trainers.exported import load_exported

exported = load_exported(sys.argv[1])
data = load_config(sys.argv[2]).data
raw = load_builtin("digits")
tagged = tag_rows(raw, plan=plan_columns(raw, data, source="digits"), split=data.split, seed=0,
                  drop_missing=False, source="digits")
rows = model_rows(tagged[tagged["_in_test"] == 1], preprocessing=exported.preprocessing)
with torch.no_grad():
    predicted = exported.model(torch.from_numpy(rows["features"])).argmax(dim=1).numpy()
print(json.dumps({"accuracy": float((predicted == rows["label"]).mean()), "rows": len(predicted),
                  "source": exported.source, "imported": sorted({"ray", "deepspeed"} & set(sys.modules))}))
"""


def test_export_of_a_zero3_run_loads_in_plain_torch_and_reproduces_its_test_accuracy(tmp_path, ray_address):
    config = experiment(tmp_path, run={"name": "exported"}, train={"zero_stage": 3}, tracking={"mode": "disabled"})
    summary = train(config, ray_address, wandb_mode="disabled")
    directory = run_dir(tmp_path, "exported")
    final = metrics(directory)[-1]

    out = tmp_path / "model"
    result = rayspeed_command("export", str(directory), "--out", str(out), "--checkpoint", "latest")
    assert result.returncode == 0, result.stderr
    assert f"exported step_{final['step']:08d} (step {final['step']}) of {directory} to {out}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors", "preprocessing.json"]

    scored = subprocess.run([sys.executable, "-c", LOAD_AND_SCORE, str(out), str(config)], capture_output=True,
                            text=True, timeout=120)
    assert scored.returncode == 0, scored.stderr
    loaded = json.loads(scored.stdout.strip().splitlines()[-1])
    assert loaded["imported"] == []  # neither Ray nor DeepSpeed
    assert loaded["source"] == {"run": str(directory), "checkpoint": f"step_{final['step']:08d}", "step": final["step"]}
    assert loaded["rows"] == json.loads((directory / "data_report.json").read_text())["split_rows"]["test"]
    assert loaded["accuracy"] == pytest.approx(summary.final["test_accuracy"], abs=1e-9) and loaded["accuracy"] > 0.8

    best = json.loads((directory / "summary.json").read_text())["best_checkpoint"].rsplit("/", 1)[-1]
    by_default = rayspeed_command("export", str(directory), "--out", str(tmp_path / "best"))  # the best
    assert by_default.returncode == 0 and f"exported {best} " in by_default.stdout, by_default.stderr

    again = rayspeed_command("export", str(directory), "--out", str(out))
    assert again.returncode == 2 and f"--out {out} is not an empty directory" in again.stderr  # nothing overwritten
    unknown = rayspeed_command("export", str(directory), "--out", str(tmp_path / "x"), "--checkpoint", "step_9")
    assert unknown.returncode == 2 and "has no such checkpoint" in unknown.stderr
    assert not (tmp_path / "x").exists()
    (out / "model.json").unlink()
    broken = subprocess.run([sys.executable, "-c", LOAD_AND_SCORE, str(out), str(config)], capture_output=True,
                            text=True, timeout=120)
    assert "is not a complete rayspeed export: model.json missing" in broken.stderr
