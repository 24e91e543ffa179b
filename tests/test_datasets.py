"""The Ray Data pipeline on a real local Ray: readers, cleaning, deterministic splits, standardization."""

import numpy as np
import pandas as pd
import pytest
import ray

from rayspeed.config.data import DataConfig
from rayspeed.datasets import build_datasets
from rayspeed.datasets.rows import tag_rows
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


def test_split_does_not_depend_on_the_dtypes_a_block_was_read_with():
    """An integer column with a null in one block arrives there as float64: 1 and 1.0 must hash alike."""
    data = pd.DataFrame({"n": np.arange(200, dtype=np.int64), "flag": np.arange(200) % 2 == 0,
                         "kind": np.where(np.arange(200) % 3 == 0, "x", "y")})
    kwargs = {"columns": ["n", "flag", "kind"], "fractions": (0.6, 0.2), "seed": 5}
    whole = tag_rows(data, **kwargs)["_split"]
    as_floats = data.astype({"n": "float64"})
    nullable = data.astype({"n": "Int64", "flag": "boolean"})
    for variant in (as_floats, nullable):
        assert (tag_rows(variant, **kwargs)["_split"] == whole).all()


def test_multi_file_input_with_nulls_splits_the_same_for_any_block_size(ray_session, tmp_path):
    """Files where pyarrow infers int64 for a column in one and double (it has a null) in another,
    read with different numbers of blocks: every surviving row lands in the same split."""
    rng = np.random.default_rng(0)
    directory = tmp_path / "parts"
    directory.mkdir()
    for part in range(3):
        rows = pd.DataFrame({"id": np.arange(part * 100, part * 100 + 100), "x": rng.integers(0, 50, 100),
                             "label": rng.choice(["a", "b"], 100)})
        if part == 1:
            rows["x"] = rows["x"].astype("float64")
            rows.loc[5, "x"] = np.nan  # this file's x column becomes double
        rows.to_csv(directory / f"part{part}.csv", index=False)
    splits = []
    for blocks in (1, 7):
        tagged = ray.data.read_csv(str(directory), override_num_blocks=blocks).map_batches(
            tag_rows, batch_format="pandas", fn_kwargs={"columns": ["id", "x", "label"], "fractions": (0.5, 0.25),
                                                        "seed": 1})
        frame_ = tagged.to_pandas()
        frame_ = frame_[frame_["_missing"] == 0].sort_values("id")
        splits.append(frame_.set_index("id")["_split"])
    assert len(splits[0]) == 299 and splits[0].equals(splits[1])


def test_train_statistics_come_from_ray_data_aggregations(ray_session, tmp_path):
    data = frame(1000)
    path = tmp_path / "animals.parquet"
    data.to_parquet(path)
    prepared = build_datasets(DataConfig(source=str(path), label_column="species"), seed=0)
    tagged = tag_rows(data, columns=["a", "b", "species"], fractions=(0.8, 0.1), seed=0)
    train = tagged[tagged["_split"] == 0][["a", "b"]]
    np.testing.assert_allclose(prepared.preprocessing.means, train.mean().to_numpy())
    np.testing.assert_allclose(prepared.preprocessing.stds, train.std(ddof=0).to_numpy())
    assert prepared.preprocessing.classes == ["cat", "dog", "eel"]
    assert prepared.split_rows == {name: int((tagged["_split"] == code).sum()) for name, code in
                                   (("train", 0), ("val", 1), ("test", 2))}


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
    assert prepared.input_spec.classes == ["cat", "dog", "eel"] and prepared.input_spec.features == ["a", "b"]
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
    assert prepared.rows_read == 1797 and prepared.input_spec.num_features == 64
    assert prepared.input_spec.num_classes == 10 and prepared.input_spec.feature_shape == [64]
