"""The Ray Data pipeline on a real local Ray: readers, cleaning, deterministic splits, standardization."""

import numpy as np
import pandas as pd
import pytest

from rayspeed.config.data import DataConfig
from rayspeed.datasets import build_datasets
from rayspeed.datasets.rows import block_stats, combine_stats, tag_rows
from rayspeed.errors import DataError


def frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"a": rng.normal(5, 2, rows), "b": rng.normal(-3, 0.5, rows),
                         "species": rng.choice(["cat", "dog", "eel"], rows)})
    return data


def test_split_depends_on_row_content_not_order():
    data = frame()
    kwargs = {"columns": ["a", "b", "species"], "fractions": (0.8, 0.1), "seed": 7}
    tagged = tag_rows(data, **kwargs)
    shuffled = tag_rows(data.sample(frac=1, random_state=1), **kwargs).loc[data.index]
    assert (tagged["_split"] == shuffled["_split"]).all()
    assert tag_rows(data, **{**kwargs, "seed": 8})["_split"].ne(tagged["_split"]).any()
    shares = tagged["_split"].value_counts(normalize=True)
    assert 0.7 < shares[0] < 0.9


def test_block_statistics_combine_to_the_whole_table_moments():
    data = frame(1000)
    tagged = tag_rows(data, columns=["a", "b", "species"], fractions=(0.8, 0.1), seed=0)
    blocks = [block_stats(part, features=["a", "b"], label="species").iloc[0].to_dict()
              for part in (tagged.iloc[i:i + 150] for i in range(0, 1000, 150))]
    stats = combine_stats(blocks)
    train = tagged[tagged["_split"] == 0][["a", "b"]]
    np.testing.assert_allclose(stats["means"], train.mean().to_numpy())
    np.testing.assert_allclose(stats["stds"], train.std(ddof=0).to_numpy())
    assert stats["labels"] == ["cat", "dog", "eel"]
    assert sum(stats["split_rows"].values()) == 1000


@pytest.fixture
def csv_with_gaps(tmp_path):
    data = frame(600)
    data.loc[[3, 10, 99], "a"] = np.nan
    data.loc[[200], "species"] = None
    path = tmp_path / "animals.csv"
    data.to_csv(path, index=False)
    return path


def test_missing_values_are_dropped_and_counted(ray_session, csv_with_gaps):
    prepared = build_datasets(DataConfig(source=str(csv_with_gaps), label_column="species"), seed=0)
    assert prepared.rows_read == 600 and prepared.rows_dropped == 4
    assert sum(prepared.split_rows.values()) == 596
    assert prepared.classes == ["cat", "dog", "eel"] and prepared.features == ["a", "b"]
    train = np.concatenate([b["features"] for b in prepared.datasets["train"].iter_batches(batch_format="numpy")])
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)  # standardized with train statistics
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-4)
    val = np.concatenate([b["features"] for b in prepared.datasets["val"].iter_batches(batch_format="numpy")])
    assert len(val) == prepared.split_rows["val"]


def test_missing_values_can_be_rejected(ray_session, csv_with_gaps):
    with pytest.raises(DataError, match="4 of 600 rows have a missing value"):
        build_datasets(DataConfig(source=str(csv_with_gaps), label_column="species", missing="reject"), seed=0)


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_parquet_and_json_lines_read_the_same_rows(ray_session, tmp_path, suffix):
    data = frame(300)
    path = tmp_path / f"animals.{suffix}"
    data.to_parquet(path) if suffix == "parquet" else data.to_json(path, orient="records", lines=True)
    prepared = build_datasets(DataConfig(source=str(path), label_column="species"), seed=3)
    reference = tag_rows(data, columns=["a", "b", "species"], fractions=(0.8, 0.1), seed=3)
    assert prepared.split_rows["train"] == int((reference["_split"] == 0).sum())


def test_non_numeric_features_and_absent_columns_are_named(ray_session, tmp_path):
    path = tmp_path / "t.csv"
    frame(50).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"data.feature_columns: \['species'\] are not numeric"):
        build_datasets(DataConfig(source=str(path), label_column="a"), seed=0)
    with pytest.raises(DataError, match="data.label_column"):
        build_datasets(DataConfig(source=str(path), label_column="kind"), seed=0)


def test_builtin_digits(ray_session):
    prepared = build_datasets(DataConfig(source="digits"), seed=0)
    assert prepared.rows_read == 1797 and prepared.num_features == 64 and prepared.num_classes == 10
