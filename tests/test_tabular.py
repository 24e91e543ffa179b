"""A mixed table end to end: text and number columns with gaps, a regression target, categories as
embedding ids, trained by real DeepSpeed on a real local Ray; the checkpoint's preprocessing
reproduces the pipeline exactly."""

import json

import numpy as np
import pandas as pd
import pytest
import ray
from conftest import experiment, rayspeed_command, run_dir, train

from rayspeed.config import load_config
from rayspeed.datasets import Preprocessing, build_datasets
from rayspeed.datasets.columns import plan_columns
from rayspeed.datasets.encoding import model_rows
from rayspeed.datasets.rows import tag_rows

pytestmark = pytest.mark.ray


def houses(rows: int, seed: int) -> pd.DataFrame:
    """Prices that depend on a number (area, sometimes missing) and a text column (district)."""
    rng = np.random.default_rng(seed)
    district = rng.choice(["north", "south", "east", "west"], rows)
    area = rng.uniform(30, 200, rows)
    price = 1000 * area * pd.Series(district).map({"north": 3.0, "south": 1.5, "east": 2.0, "west": 2.5})
    data = pd.DataFrame({"area": area, "district": district, "rooms": rng.integers(1, 6, rows),
                         "price": price + rng.normal(0, 5000, rows)})
    data.loc[rng.choice(rows, rows // 20, replace=False), "area"] = np.nan
    return data


def test_regression_on_a_mixed_table_and_preprocessing_restored_from_the_checkpoint(tmp_path, ray_address):
    path = tmp_path / "houses.csv"
    houses(3000, seed=0).to_csv(path, index=False)
    config = experiment(tmp_path, run={"name": "houses"}, model={"name": "mlp", "args": {"hidden_sizes": [32]}},
                        data={"source": str(path), "label_column": "price", "task": "regression",
                              "missing": "median", "categorical_columns": ["rooms"],
                              "categorical_encoding": "ids"},  # district and rooms: embedding tables
                        train={"epochs": 4, "lr": 0.01}, tracking={"mode": "disabled"},
                        checkpoint={"score_metric": "val_rmse", "score_mode": "min"})
    summary = train(config, ray_address, wandb_mode="disabled")
    assert summary.final["val_r2"] > 0.8 and summary.final["test_r2"] > 0.8
    directory = run_dir(tmp_path, "houses")
    report = json.loads((directory / "data_report.json").read_text())
    assert report["missing_values"]["area"] == 150 and report["rows_dropped"]["missing values"] == 0

    # The test split was held back from fitting: through the checkpoint's preprocessing on this
    # process (plain pandas) and through the Ray Data pipeline, it becomes the same model inputs.
    checkpoint = max(directory.glob("step_*"))
    restored = Preprocessing.from_dict(json.loads((checkpoint / "preprocessing.json").read_text()))
    assert restored == Preprocessing.from_dict(json.loads((directory / "preprocessing.json").read_text()))
    data = load_config(config).data
    raw = pd.read_csv(path, dtype={"district": "string"})
    tagged = tag_rows(raw, plan=plan_columns(raw, data, source=str(path)), split=data.split, seed=0,
                      drop_missing=False, source=str(path))
    held_back = model_rows(tagged[tagged["_in_test"] == 1], preprocessing=restored)
    ray.init(address=ray_address)
    try:
        pipeline = build_datasets(data, seed=0, fitted=restored).datasets["test"].to_pandas()
    finally:
        ray.shutdown()
    by_hash = {h: (f, c) for h, f, c in zip(pipeline["row_hash"], pipeline["features"], pipeline["categories"],
                                            strict=True)}
    assert len(by_hash) == len(held_back["row_hash"]) == report["split_rows"]["test"]
    for row_hash, features, categories in zip(held_back["row_hash"], held_back["features"], held_back["categories"],
                                              strict=True):
        np.testing.assert_array_equal(by_hash[row_hash][0], features)
        np.testing.assert_array_equal(by_hash[row_hash][1], categories)
    assert not np.isnan(held_back["features"]).any()  # missing areas filled with the train median
    assert summary.final["test_rmse"] < 0.3 * restored.target_std  # errors in dollars, well inside the spread

    evaluated = rayspeed_command("evaluate", str(directory), "--checkpoint", "latest", "--address", ray_address)
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads(next((directory / "evaluation").glob("*-test/metrics.json")).read_text())
    for name in ("rmse", "mae", "r2"):  # in dollars, as training reported them
        assert scores[name] == pytest.approx(summary.final[f"test_{name}"], rel=1e-4), name
