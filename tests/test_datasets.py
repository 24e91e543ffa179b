"""The Ray Data pipeline on a real local Ray: readers, cleaning, encoding, deterministic splits and
folds, train-only fitting, bad data."""

import numpy as np
import pandas as pd
import pytest
import ray

from rayspeed.config.data import DataConfig, SplitFractions
from rayspeed.datasets import build_datasets, prepared
from rayspeed.datasets.columns import ColumnPlan
from rayspeed.datasets.encoding import model_rows
from rayspeed.datasets.preprocessing import UNKNOWN
from rayspeed.datasets.rows import tag_rows
from rayspeed.errors import DataError

PLAN = ColumnPlan(label="species", features=["a", "b"], categorical=frozenset(), numeric_label=False)


def frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(5, 2, rows), "b": rng.normal(-3, 0.5, rows),
                         "species": rng.choice(["cat", "dog", "eel"], rows)})


def tag(data: pd.DataFrame, plan: ColumnPlan = PLAN, split: SplitFractions | None = None, seed: int = 0
        ) -> pd.DataFrame:
    return tag_rows(data, plan=plan, split=split or SplitFractions(), seed=seed, drop_missing=True, source="test")


def test_split_depends_on_row_content_not_order():
    data = frame()
    tagged = tag(data, seed=7)
    shuffled = tag(data.sample(frac=1, random_state=1), seed=7).loc[data.index]
    assert (tagged["_split"] == shuffled["_split"]).all()
    assert tag(data, seed=8)["_split"].ne(tagged["_split"]).any()
    shares = tagged["_split"].value_counts(normalize=True)
    assert 0.7 < shares[0] < 0.9


def test_split_does_not_depend_on_the_dtypes_a_block_was_read_with():
    """An integer column with a null in one block arrives there as float64: 1 and 1.0 must hash alike."""
    data = pd.DataFrame({"n": np.arange(200, dtype=np.int64), "flag": np.arange(200) % 2 == 0,
                         "kind": np.where(np.arange(200) % 3 == 0, "x", "y")})
    plan = ColumnPlan(label="kind", features=["n", "flag"], categorical=frozenset(), numeric_label=False)
    whole = tag(data, plan)["_split"]
    for variant in (data.astype({"n": "float64"}), data.astype({"n": "Int64", "flag": "boolean"})):
        assert (tag(variant, plan)["_split"] == whole).all()


def test_folds_are_disjoint_and_cover_every_row_outside_test():
    data = frame(3000)
    folds = [tag(data, split=SplitFractions(test=0.2, folds=4, fold=k)) for k in range(4)]
    test = folds[0]["_split"] == 2
    assert all((f["_split"] == 2).equals(test) for f in folds)  # the same test rows whatever the fold
    val = np.stack([(f["_split"] == 1).to_numpy() for f in folds])
    assert (val.sum(axis=0) == ~test.to_numpy()).all()  # each non-test row validated in exactly one fold
    assert all(abs(v.mean() - 0.2) < 0.03 for v in val)


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
    plan = ColumnPlan(label="label", features=["id", "x"], categorical=frozenset(), numeric_label=False)
    splits = []
    for blocks in (1, 7):
        tagged = ray.data.read_csv(str(directory), override_num_blocks=blocks).map_batches(
            tag_rows, batch_format="pandas", fn_kwargs={
                "plan": plan, "split": SplitFractions(train=0.5, val=0.25, test=0.25), "seed": 1,
                "drop_missing": True, "source": str(directory)})
        rows = tagged.to_pandas()
        splits.append(rows[rows["_usable"] == 1].sort_values("id").set_index("id")["_split"])
    assert len(splits[0]) == 299 and splits[0].equals(splits[1])


def test_train_statistics_come_from_ray_data_aggregations(ray_session, tmp_path):
    data = frame(1000)
    path = tmp_path / "animals.csv"
    data.to_csv(path, index=False)
    prepared = build_datasets(DataConfig(source=str(path), label_column="species"), seed=0)
    tagged = tag(pd.read_csv(path))  # as written: the CSV's decimal text, not the frame's exact floats
    train = tagged[tagged["_split"] == 0][["a", "b"]]
    fitted = prepared.preprocessing.numeric
    np.testing.assert_allclose([c.mean for c in fitted], train.mean().to_numpy())
    np.testing.assert_allclose([c.std for c in fitted], train.std(ddof=0).to_numpy())
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
    assert prepared.rows_read == 600 and prepared.dropped == {"bad values": 0, "no label": 1, "missing values": 3,
                                                              "duplicates": 0}
    assert prepared.missing_values == {"a": 3, "b": 0} and sum(prepared.split_rows.values()) == 596
    assert prepared.input_spec.classes == ["cat", "dog", "eel"] and prepared.input_spec.features == ["a", "b"]
    train = np.concatenate([b["features"] for b in prepared.datasets["train"].iter_batches(batch_format="numpy")])
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)  # standardized with train statistics
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-4)
    val = np.concatenate([b["features"] for b in prepared.datasets["val"].iter_batches(batch_format="numpy")])
    assert len(val) == prepared.split_rows["val"]


def test_missing_values_can_be_rejected(ray_session, csv_with_gaps):
    with pytest.raises(DataError, match="3 of 600 rows have a missing value"):
        build_datasets(DataConfig(source=str(csv_with_gaps), label_column="species", missing="reject"), seed=0)


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_parquet_and_json_lines_read_the_same_rows(ray_session, tmp_path, suffix):
    data = frame(300)
    path = tmp_path / f"animals.{suffix}"
    data.to_parquet(path) if suffix == "parquet" else data.to_json(path, orient="records", lines=True)
    prepared = build_datasets(DataConfig(source=str(path), label_column="species"), seed=3)
    assert prepared.split_rows["train"] == int((tag(data, seed=3)["_split"] == 0).sum())


def test_text_columns_are_one_hot_encoded_with_train_vocabulary_and_fills(ray_session, tmp_path):
    rng = np.random.default_rng(1)
    rows = 2000
    data = pd.DataFrame({"x": rng.normal(0, 1, rows), "color": rng.choice(["red", "green", "blue", "teal"], rows,
                                                                          p=[0.5, 0.3, 0.15, 0.05]),
                         "code": rng.integers(1, 4, rows), "y": rng.choice([0, 1], rows)})
    data.loc[:40, "x"] = np.nan
    data.loc[50:60, "color"] = None
    data.loc[100, "x"] = 1e6  # an outlier the clipping must tame
    path = tmp_path / "mixed.csv"
    data.to_csv(path, index=False)
    config = DataConfig(source=str(path), label_column="y", categorical_columns=["code"], max_categories=3,
                        missing="median", clip_quantiles=(0.01, 0.99))
    prepared = build_datasets(config, seed=0)
    fitted = prepared.preprocessing
    assert prepared.dropped["missing values"] == 0 and prepared.missing_values == {"x": 41, "color": 11, "code": 0}
    (x,), (color, code) = fitted.numeric, fitted.categorical
    assert color.vocabulary == ["red", "green", "blue"] and color.fill is None  # teal is rare: unknown slot
    assert code.vocabulary == ["1", "2", "3"] or sorted(code.vocabulary) == ["1", "2", "3"]
    assert abs(x.fill) < 0.1 and x.clip[1] < 4  # the train median, and a high bound below the outlier
    assert prepared.input_spec.features == ["x", f"color={UNKNOWN}", "color=red", "color=green", "color=blue",
                                            f"code={UNKNOWN}", *(f"code={v}" for v in code.vocabulary)]
    raw = pd.DataFrame({"x": [np.nan, 1e6], "color": ["teal", None], "code": [2, 9], "y": [1, 0]})  # as read
    encoded = model_rows(raw, preprocessing=fitted)
    features = encoded["features"]
    assert features[0, 0] == pytest.approx((x.fill - x.mean) / x.std, rel=1e-5)
    assert features[1, 0] == pytest.approx((x.clip[1] - x.mean) / x.std, rel=1e-5)
    assert features[0, 1] == features[1, 1] == 1  # unseen and missing colors: the unknown slot
    assert features[1, 5] == 1 and features[0, 6 + code.vocabulary.index("2")] == 1
    assert features.sum(axis=1).tolist() == pytest.approx([2 + features[0, 0], 2 + features[1, 0]])


def test_regression_target_and_duplicates(ray_session, tmp_path):
    rng = np.random.default_rng(2)
    data = pd.DataFrame({"x": rng.normal(0, 1, 500), "kind": rng.choice(["a", "b"], 500)})
    data["price"] = 100 + 20 * data["x"] + rng.normal(0, 1, 500)
    path = tmp_path / "prices.csv"
    pd.concat([data, data.iloc[:30]]).to_csv(path, index=False)  # 30 rows twice
    prepared = build_datasets(DataConfig(source=str(path), label_column="price", task="regression",
                                         deduplicate=True), seed=0)
    assert prepared.rows_read == 530 and prepared.dropped["duplicates"] == 30
    assert sum(prepared.split_rows.values()) == 500
    fitted = prepared.preprocessing
    assert fitted.task == "regression" and 95 < fitted.target_mean < 105 and 15 < fitted.target_std < 25
    labels = np.concatenate([b["label"] for b in prepared.datasets["train"].iter_batches(batch_format="numpy")])
    assert labels.dtype == np.float32 and abs(labels.mean()) < 1e-3


def test_builtin_digits_and_a_full_shuffle_every_pass(ray_session):
    prepared = build_datasets(DataConfig(source="digits"), seed=0)
    assert prepared.rows_read == 1797 and prepared.input_spec.num_features == 64
    assert prepared.input_spec.num_classes == 10 and prepared.input_spec.feature_shape == [64]
    shuffled = build_datasets(DataConfig(source="digits", shuffle="full", cache="none"), seed=0).datasets["train"]
    first, second = (list(shuffled.to_pandas()["row_hash"]) for _ in range(2))
    assert sorted(first) == sorted(second) == sorted(prepared.datasets["train"].to_pandas()["row_hash"])
    assert first != second


def test_categorical_ids_are_slot_numbers_beside_the_numbers(ray_session, tmp_path):
    path = tmp_path / "pets.csv"
    frame(300).assign(colour=lambda f: np.where(f["a"] > 5, "red", "blue")).to_csv(path, index=False)
    prepared = build_datasets(DataConfig(source=str(path), label_column="species", categorical_encoding="ids"),
                              seed=0)
    spec, rows = prepared.input_spec, prepared.datasets["train"].to_pandas()
    assert spec.features == ["a", "b"] and spec.category_sizes == [3]  # unknown, then the 2 colours
    vocabulary = prepared.preprocessing.categorical[0].vocabulary
    slots = np.stack(rows["categories"])[:, 0]
    assert set(slots) == {1, 2} and np.stack(rows["features"]).shape == (len(rows), 2)
    colour = {"red": vocabulary.index("red") + 1, "blue": vocabulary.index("blue") + 1}
    a = prepared.preprocessing.numeric[0]
    expected = [colour["red"] if f[0] * a.std + a.mean > 5 else colour["blue"] for f in rows["features"]]
    assert list(slots) == expected


def test_folds_of_a_real_pipeline_are_disjoint_and_cover_the_data(ray_session, tmp_path):
    path = tmp_path / "animals.csv"
    frame(900).to_csv(path, index=False)
    seen = []
    for fold in range(3):
        prepared = build_datasets(DataConfig(source=str(path), label_column="species",
                                             split={"test": 0.1, "folds": 3, "fold": fold}), seed=0)
        val = {int(h) for b in prepared.datasets["val"].iter_batches(batch_format="numpy") for h in b["row_hash"]}
        train = {int(h) for b in prepared.datasets["train"].iter_batches(batch_format="numpy")
                 for h in b["row_hash"]}
        assert not val & train
        seen.append((val, train | val))
    assert not (seen[0][0] & seen[1][0]) and not (seen[1][0] & seen[2][0]) and not (seen[0][0] & seen[2][0])
    assert seen[0][0] | seen[1][0] | seen[2][0] == seen[0][1] == seen[1][1]


@pytest.fixture
def two_files(tmp_path):
    directory = tmp_path / "parts"
    directory.mkdir()
    for part in range(2):
        frame(200, seed=part).to_csv(directory / f"part{part}.csv", index=False)
    return directory


def test_a_malformed_file_is_named(ray_session, two_files):
    with (two_files / "part1.csv").open("a") as broken:
        broken.write("1.0,2.0,cat,surplus,fields\n")
    with pytest.raises(DataError, match=r"data.source: cannot read .*part1\.csv: CSV parse error"):
        build_datasets(DataConfig(source=str(two_files), label_column="species"), seed=0)


def test_a_value_of_the_wrong_type_names_file_and_column_or_is_dropped_and_counted(ray_session, two_files):
    with (two_files / "part1.csv").open("a") as wrong:
        wrong.write("n/a!,2.0,cat\n")
    config = DataConfig(source=str(two_files), label_column="species")
    with pytest.raises(DataError, match=r"data.source: .*part1\.csv: column 'a' holds 'n/a!', not a number \(1 rows "
                                        r"have such values\); set data.bad_values: drop"):
        build_datasets(config, seed=0)
    prepared = build_datasets(config.model_copy(update={"bad_values": "drop"}), seed=0)
    assert prepared.rows_read == 401 and prepared.dropped["bad values"] == 1
    assert sum(prepared.split_rows.values()) == 400


def test_an_empty_source_and_an_absent_label_are_named(ray_session, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b,species\n")
    with pytest.raises(DataError, match=r"data.source: '.*empty\.csv' holds no rows"):
        build_datasets(DataConfig(source=str(empty), label_column="species"), seed=0)
    table = tmp_path / "t.csv"
    frame(50).to_csv(table, index=False)
    with pytest.raises(DataError, match=r"data.label_column: column\(s\) \['kind'\] not in '.*t\.csv'"):
        build_datasets(DataConfig(source=str(table), label_column="kind"), seed=0)
    with pytest.raises(DataError, match="data.label_column: 'species' is text; regression needs a numeric target"):
        build_datasets(DataConfig(source=str(table), label_column="species", task="regression"), seed=0)


def test_builtin_flights_keeps_cancelled_flights_out_and_encodes_its_airports(ray_session):
    prepared = build_datasets(DataConfig(source="flights", label_column="late", categorical_columns=["month"],
                                         max_categories=20), seed=0)
    assert prepared.rows_read == 336776 and prepared.dropped["no label"] == 9430  # cancelled: no arrival
    assert prepared.preprocessing.classes == [0, 1]  # dep_delay's 8255 gaps are all cancelled flights
    carrier = next(c for c in prepared.preprocessing.categorical if c.name == "carrier")
    assert carrier.vocabulary[:3] == ["UA", "B6", "EV"]  # the busiest carriers of 2013 out of New York


def test_auto_cache_keeps_a_small_train_split_and_streams_one_too_large_for_the_store(ray_session, tmp_path,
                                                                                    monkeypatch):
    path = tmp_path / "pets.csv"
    frame(300).to_csv(path, index=False)
    data = DataConfig(source=str(path), label_column="species")
    kept = build_datasets(data, seed=0)
    monkeypatch.setattr(prepared, "AUTO_CACHE_SHARE", 1e-9)  # no train split fits now
    streamed = build_datasets(data, seed=0)
    path.unlink()  # what is kept in the object store still reads; what streams reads the source again
    assert kept.datasets["train"].count() == kept.split_rows["train"]
    assert streamed.datasets["val"].count() == streamed.split_rows["val"]
    with pytest.raises(Exception, match="pets.csv"):
        streamed.datasets["train"].count()
