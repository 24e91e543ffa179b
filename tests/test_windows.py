"""Windows of time-ordered rows: splits by time, gaps left out, the label a later row's, and the
last-value baseline, from a real Ray Data pipeline over a CSV."""

import numpy as np
import pandas as pd
import pytest

from rayspeed.config.data import DataConfig
from rayspeed.datasets import build_datasets
from rayspeed.datasets.windows import time_steps
from rayspeed.errors import DataError

pytestmark = pytest.mark.ray


@pytest.fixture
def readings(tmp_path):
    """Two stations, 100 hourly readings each; station b misses hour 50; station c has 3 readings only (no
    window). `level` rises by 1 an hour."""
    hours = pd.date_range("2024-01-01", periods=100, freq="h", tz="UTC")
    frames = []
    for station, offset in (("a", 0.0), ("b", 1000.0)):
        frame = pd.DataFrame({"station": station, "time": hours.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "level": offset + np.arange(100.0), "noise": np.random.default_rng(0).normal(size=100)})
        frames.append(frame.drop(index=50) if station == "b" else frame)
    frames.append(frames[0].head(3).assign(station="c", level=lambda f: f["level"] + 5000))
    path = tmp_path / "readings.csv"
    pd.concat(frames).sample(frac=1.0, random_state=0).to_csv(path, index=False)  # rows in no order
    return path


def test_time_steps_count_in_units_of_every():
    steps = time_steps(pd.Series(["2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z", "soon"]), "1h")
    assert steps[1] - steps[0] == 2.0 and np.isnan(steps[2])
    assert list(time_steps(pd.Series([10, 15]), "5")) == [2.0, 3.0]


def test_windows_split_by_time_skip_gaps_and_label_a_later_row(readings, ray_session):
    data = DataConfig(source=str(readings), task="regression", label_column="level", feature_columns=["level", "noise"],
                      split={"train": 0.6, "val": 0.2, "test": 0.2},
                      windows={"time_column": "time", "every": "1h", "series_column": "station", "length": 5,
                               "horizon": 2})
    prepared = build_datasets(data, seed=0)
    spec = prepared.input_spec
    assert spec.sequence_shape == [5, 2] and spec.num_features == 10
    # a: 100 - 6 windows; b: the gap at hour 50 removes the 6 windows that would span it.
    assert sum(prepared.split_rows.values()) == 94 + (93 - 6)
    level = prepared.preprocessing.numeric[0]
    scale = (prepared.preprocessing.target_mean, prepared.preprocessing.target_std)
    hours = {}
    for name, dataset in prepared.datasets.items():
        batch = dataset.take_batch(1000)
        window_levels = batch["features"].reshape(-1, 5, 2)[:, :, 0] * level.std + level.mean
        labels = batch["label"] * scale[1] + scale[0]
        assert np.allclose(np.diff(window_levels, axis=1), 1.0, atol=1e-3)  # consecutive hours, oldest first
        assert np.allclose(labels, window_levels[:, -1] + 2, atol=1e-3)  # the row 2 hours after the last
        hours[name] = np.mod(labels, 1000)  # the label's hour
    assert hours["train"].max() < hours["val"].min() <= hours["val"].max() < hours["test"].min()
    # The level rises 2 in 2 hours: the last-value forecast is off by exactly 2.
    assert prepared.baselines["test_mae_last_value"] == pytest.approx(2.0, rel=1e-4)
    assert prepared.dropped["no full window before them"] == 202 - sum(prepared.split_rows.values())


def test_a_time_column_that_every_cannot_read_is_named(readings, ray_session):
    data = DataConfig(source=str(readings), task="regression", label_column="level",
                      windows={"time_column": "time", "series_column": "station"})  # every: "1", for numbers
    with pytest.raises(DataError, match=r"data.windows.every: 'time' holds times .*give a duration like '1h'"):
        build_datasets(data, seed=0)


def test_windows_refuse_settings_that_would_leak_or_open_gaps():
    windows = {"time_column": "time", "every": "1h"}
    with pytest.raises(ValueError, match="split.folds"):
        DataConfig(source="x.csv", windows=windows, split={"folds": 5})
    with pytest.raises(ValueError, match="deduplicate would open gaps"):
        DataConfig(source="x.csv", windows=windows, deduplicate=True)
    with pytest.raises(ValueError, match="'sometimes' is neither a number nor a duration"):
        DataConfig(source="x.csv", windows={**windows, "every": "sometimes"})
