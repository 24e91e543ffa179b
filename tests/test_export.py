"""One 2-worker ZeRO-3 digits run, then what a user does with it: `rayspeed export` (loads with torch
alone: no Ray, no DeepSpeed imported), `rayspeed evaluate` (scikit-learn's numbers on the same
predictions; the export reproduces them in plain torch), `rayspeed predict` (one prediction per row,
in input order) and a run that fine-tunes the export (`model.init_from`, `model.freeze`)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import experiment, logged_table, metrics, rayspeed_command, run_dir, train, wandb_config
from safetensors.torch import load_file
from sklearn import metrics as sk

from rayspeed.datasets.builtin import load_builtin
from rayspeed.datasets.encoding import model_rows
from rayspeed.trainers import wandb_records
from rayspeed.trainers.exported import load_exported

pytestmark = pytest.mark.ray

# The held-back test rows of digits (as the pipeline tags them), through the export in a process with
# neither Ray nor DeepSpeed: their hashes, predicted classes and probabilities.
LOAD_AND_PREDICT = """
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
    probabilities = exported.model(torch.from_numpy(rows["features"])).softmax(dim=1)
print(json.dumps({"row_hash": rows["row_hash"].tolist(), "label": rows["label"].tolist(),
                  "predicted": probabilities.argmax(dim=1).tolist(), "probabilities": probabilities.tolist(),
                  "source": exported.source, "imported": sorted({"ray", "deepspeed"} & set(sys.modules))}))
"""


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory, ray_address):
    """The trained run, its config, its summary and its latest checkpoint exported to `model/`."""
    tmp_path = tmp_path_factory.mktemp("zero3")
    config = experiment(tmp_path, run={"name": "exported"}, train={"zero_stage": 3}, tracking={"mode": "offline"})
    summary = train(config, ray_address)
    directory = run_dir(tmp_path, "exported")
    out = tmp_path / "model"
    result = rayspeed_command("export", str(directory), "--out", str(out), "--checkpoint", "latest")
    assert result.returncode == 0, result.stderr
    return {"dir": directory, "config": config, "summary": summary, "model": out, "tmp": tmp_path,
            "export_stdout": result.stdout}


def load_and_predict(model: Path, config: Path) -> dict:
    scored = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(model), str(config)], capture_output=True,
                            text=True, timeout=120)
    assert scored.returncode == 0, scored.stderr
    return json.loads(scored.stdout.strip().splitlines()[-1])


def test_export_loads_in_plain_torch_and_reproduces_the_runs_test_accuracy(zero3_run):
    directory, out, final = zero3_run["dir"], zero3_run["model"], metrics(zero3_run["dir"])[-1]
    assert f"exported step_{final['step']:08d} (step {final['step']}) of {directory} to {out}" in zero3_run[
        "export_stdout"]
    assert sorted(p.name for p in out.iterdir()) == ["input_spec.json", "model.json", "model.safetensors",
                                                     "preprocessing.json"]
    assert "logged as a W&B model artifact: offline" in zero3_run["export_stdout"]
    report = rayspeed_command("report", str(directory))  # its figures as W&B images too
    assert report.returncode == 0 and "figures logged to W&B: offline" in report.stdout, report.stderr
    run_id = json.loads((directory / "rayspeed.json").read_text())["wandb_run_id"]
    assert {"figures/report/curves/path", "figures/report/confusion_matrix/path"} <= set(
        wandb_records.history(directory / "wandb", run_id)[-1])
    models = [a for a in wandb_records.artifacts(directory / "wandb", run_id) if a.type == "model"]
    assert [(a.name, set(a.aliases)) for a in models] == [(f"model-exported-{run_id}", {f"step_{final['step']:08d}",
                                                                                        "latest"})]
    assert sorted(entry.path for entry in models[0].manifest.contents) == sorted(p.name for p in out.iterdir())
    assert json.loads(models[0].metadata)["input_spec"] == json.loads((out / "input_spec.json").read_text())

    loaded = load_and_predict(out, zero3_run["config"])
    assert loaded["imported"] == []  # neither Ray nor DeepSpeed
    assert loaded["source"] == {"run": str(directory), "checkpoint": f"step_{final['step']:08d}", "step": final["step"]}
    assert len(loaded["predicted"]) == json.loads((directory / "data_report.json").read_text())["split_rows"]["test"]
    accuracy = np.mean(np.array(loaded["predicted"]) == np.array(loaded["label"]))
    assert accuracy == pytest.approx(zero3_run["summary"].final["test_accuracy"], abs=1e-9) and accuracy > 0.8

    tmp_path = zero3_run["tmp"]
    best = json.loads((directory / "summary.json").read_text())["best_checkpoint"].rsplit("/", 1)[-1]
    by_default = rayspeed_command("export", str(directory), "--out", str(tmp_path / "best"))  # the best
    assert by_default.returncode == 0 and f"exported {best} " in by_default.stdout, by_default.stderr

    again = rayspeed_command("export", str(directory), "--out", str(out))
    assert again.returncode == 2 and f"--out {out} is not an empty directory" in again.stderr  # nothing overwritten
    registry = rayspeed_command("export", str(directory), "--out", str(tmp_path / "r"), "--registry",
                                "wandb-registry-model/digits")
    assert registry.returncode == 2 and "linking into W&B's registry needs W&B online" in registry.stderr
    assert not (tmp_path / "r").exists()
    unknown = rayspeed_command("export", str(directory), "--out", str(tmp_path / "x"), "--checkpoint", "step_9")
    assert unknown.returncode == 2 and "has no such checkpoint" in unknown.stderr
    assert not (tmp_path / "x").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.safetensors", "preprocessing.json"):
        (broken / name).write_bytes((out / name).read_bytes())
    with pytest.raises(Exception, match="is not a complete rayspeed export: model.json missing"):
        load_exported(broken)


def test_evaluate_reports_scikit_learns_metrics_and_the_export_reproduces_its_predictions(zero3_run, ray_address):
    directory, final = zero3_run["dir"], metrics(zero3_run["dir"])[-1]
    result = rayspeed_command("evaluate", str(directory), "--checkpoint", "latest", "--address", ray_address)
    assert result.returncode == 0, result.stderr
    folder = directory / "evaluation" / f"step_{final['step']:08d}-test"
    assert f"written to {folder}" in result.stdout and "roc_auc" in result.stdout
    scores = json.loads((folder / "metrics.json").read_text())
    predicted = pd.read_parquet(folder / "predictions.parquet")
    classes = [str(c) for c in range(10)]
    probabilities = predicted[[f"probability:{c}" for c in classes]].to_numpy(dtype=np.float64)

    assert len(predicted) == scores["rows"] == json.loads((directory / "data_report.json").read_text())[
        "split_rows"]["test"]
    assert scores["accuracy"] == pytest.approx(sk.accuracy_score(predicted["label"], predicted["prediction"]))
    assert scores["f1_macro"] == pytest.approx(sk.f1_score(predicted["label"], predicted["prediction"],
                                                           average="macro"))
    assert scores["roc_auc"] == pytest.approx(sk.roc_auc_score(predicted["label"].astype(int), probabilities,
                                                               multi_class="ovr"))
    assert scores["per_class"]["3"]["recall"] == pytest.approx(
        sk.recall_score(predicted["label"], predicted["prediction"], labels=["3"], average=None)[0])
    assert np.array(scores["confusion"]).sum() == len(predicted)
    # The same numbers as training's own test evaluation (DeepSpeed on the workers) of that checkpoint.
    assert scores["accuracy"] == pytest.approx(zero3_run["summary"].final["test_accuracy"], abs=1e-9)
    assert scores["f1_macro"] == pytest.approx(zero3_run["summary"].final["test_f1"], abs=1e-9)

    plain = load_and_predict(zero3_run["model"], zero3_run["config"])
    order = np.argsort(plain["row_hash"], kind="stable")
    assert predicted["row_hash"].tolist() == np.array(plain["row_hash"])[order].tolist()
    assert predicted["prediction"].tolist() == [str(c) for c in np.array(plain["predicted"])[order]]
    np.testing.assert_allclose(probabilities, np.array(plain["probabilities"])[order], atol=1e-6)

    run_id = json.loads((directory / "rayspeed.json").read_text())["wandb_run_id"]
    logged = wandb_config(directory / "wandb", run_id, kind="summary")
    assert logged["evaluate/test/accuracy"] == pytest.approx(scores["accuracy"])
    assert logged["evaluate/test/checkpoint"] == f"step_{final['step']:08d}"
    # W&B's confusion-matrix chart and the per-class table, with evaluate's numbers.
    chart = logged_table(directory / "wandb", run_id, "evaluate/test/confusion_matrix_table")
    assert {(actual, predicted): count for actual, predicted, count in chart["data"]} == {
        (classes[i], classes[j]): n for i, row in enumerate(scores["confusion"]) for j, n in enumerate(row)}
    assert "_wandb/visualize/evaluate/test/confusion_matrix" in wandb_config(directory / "wandb", run_id)
    per_class = logged_table(directory / "wandb", run_id, "evaluate/test/per_class")
    assert per_class["columns"] == ["class", "precision", "recall", "f1", "support"]
    assert {row[0]: dict(zip(per_class["columns"][1:], row[1:], strict=True)) for row in per_class["data"]} == \
        scores["per_class"]

    again = rayspeed_command("evaluate", str(directory), "--checkpoint", "latest", "--split", "val",
                             "--address", ray_address)
    assert again.returncode == 0, again.stderr
    assert json.loads((directory / "evaluation" / f"step_{final['step']:08d}-val" / "metrics.json").read_text())[
        "accuracy"] == pytest.approx(final["val_accuracy"], abs=1e-9)


def test_evaluate_refuses_a_directory_without_checkpoints(zero3_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text((zero3_run["dir"] / "config.yaml").read_text())
    result = rayspeed_command("evaluate", str(empty))
    assert result.returncode == 2 and "has no such checkpoint" in result.stderr, result.stderr
    nothing = rayspeed_command("evaluate", str(tmp_path / "nowhere"))
    assert nothing.returncode == 2 and "is not a rayspeed run: it has no config.yaml" in nothing.stderr


def test_predict_writes_one_prediction_per_row_in_input_order(zero3_run, tmp_path, ray_address):
    rows = load_builtin("digits").sample(frac=1.0, random_state=7).reset_index(drop=True)
    rows["label"] = rows["label"].astype(str)
    rows.loc[3, "label"] = None  # the label column is not read: a missing (or new) class does not matter
    rows.loc[5, "pixel_10"] = np.nan  # a missing value (training dropped such rows): no prediction
    source = tmp_path / "rows"  # three files of several row groups: many blocks, still in order
    source.mkdir()
    for part, start in enumerate(range(0, len(rows), 600)):
        rows.iloc[start:start + 600].to_parquet(source / f"part-{part}.parquet", index=False, row_group_size=100)
    out = tmp_path / "predicted.csv"
    result = rayspeed_command("predict", str(zero3_run["model"]), str(source), "--out", str(out),
                              "--address", ray_address)
    assert result.returncode == 0, result.stderr
    assert f"wrote {len(rows)} predictions to {out}" in result.stdout
    assert "1 rows have a missing or unparsable feature value: their prediction is null" in result.stdout
    predicted = pd.read_csv(out)
    exported = load_exported(zero3_run["model"])
    features = model_rows(rows.drop(columns=["label"]), preprocessing=exported.preprocessing)["features"]
    with torch.no_grad():
        expected = exported.model(torch.from_numpy(features))
    usable = np.arange(len(rows)) != 5
    assert len(predicted) == len(rows) and predicted["prediction"].isna().tolist() == (~usable).tolist()
    assert predicted["prediction"][usable].astype(int).tolist() == expected.argmax(dim=1)[usable].tolist()  # in order
    np.testing.assert_allclose(predicted["probability:4"][usable], expected.softmax(dim=1)[usable, 4].numpy(),
                               atol=1e-6)

    again = rayspeed_command("predict", str(zero3_run["model"]), str(source), "--out", str(out))
    assert again.returncode == 2 and "exists: predict never overwrites files" in again.stderr
    lacking = tmp_path / "lacking.csv"
    rows.drop(columns=["pixel_3"]).to_csv(lacking, index=False)
    refused = rayspeed_command("predict", str(zero3_run["model"]), str(lacking), "--out", str(tmp_path / "x.csv"),
                               "--address", ray_address)
    assert refused.returncode == 2 and f"{lacking}: no feature column 'pixel_3'" in refused.stderr, refused.stderr
    assert not (tmp_path / "x.csv").exists()


def test_fine_tuning_starts_at_the_exports_score_and_keeps_frozen_layers(zero3_run, tmp_path, ray_address):
    exported_final = metrics(zero3_run["dir"])[-1]
    config = experiment(tmp_path, run={"name": "tuned"}, train={"epochs": 1, "zero_stage": 3},
                        model={"init_from": str(zero3_run["model"]), "freeze": ["0."]}, tracking={"mode": "disabled"})
    train(config, ray_address, wandb_mode="disabled")
    directory = run_dir(tmp_path, "tuned")
    rows = metrics(directory)
    assert rows[0]["step"] == 0 and "train_loss" not in rows[0]  # evaluated before any step
    assert rows[0]["val_accuracy"] == pytest.approx(exported_final["val_accuracy"], abs=1e-9)
    assert rows[0]["val_loss"] == pytest.approx(exported_final["val_loss"], rel=1e-5)
    assert rows[-1]["step"] > 0 and rows[-1]["train_loss"] > 0

    tuned = tmp_path / "tuned-model"
    assert rayspeed_command("export", str(directory), "--out", str(tuned)).returncode == 0
    before, after = load_file(zero3_run["model"] / "model.safetensors"), load_file(tuned / "model.safetensors")
    assert torch.equal(before["0.weight"], after["0.weight"]) and torch.equal(before["0.bias"], after["0.bias"])
    assert not torch.equal(before["2.weight"], after["2.weight"])  # the rest trained
