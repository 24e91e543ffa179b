"""Pictures: a real folder of PNG files (scikit-learn's handwritten digits, one subfolder per class)
through the Ray Data picture pipeline and real DeepSpeed training; augmentation reaches the train
split only; the checkpoint's transform reproduces the pipeline on raw files."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import experiment, rayspeed_command, run_dir, train
from PIL import Image

from rayspeed.config import load_config
from rayspeed.config.images import Augmentation
from rayspeed.datasets import Preprocessing, build_datasets
from rayspeed.datasets.augmentation import augment_rows
from rayspeed.datasets.images import PictureFormat, tag_pictures
from rayspeed.datasets.picture_transform import picture_rows
from rayspeed.errors import DataError
from rayspeed.trainers.exported import load_exported

ALL_CHANGES = {"flip": {"probability": 1.0}, "rotation": {"probability": 1.0, "degrees": 20},
               "crop": {"probability": 1.0, "padding": 2}, "noise": {"probability": 1.0, "std": 0.2}}


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    """1,797 8x8 PNG pictures in folders named after their digit."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digit_pictures")
    bunch = load_digits()
    for index, (pixels, label) in enumerate(zip(bunch.images, bunch.target, strict=True)):
        folder = root / f"digit_{label}"
        folder.mkdir(exist_ok=True)
        Image.fromarray((pixels * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{index:04d}.png")
    return root


def by_hash(dataset) -> dict[int, np.ndarray]:
    rows = dataset.to_pandas()
    return {int(h): np.asarray(f) for h, f in zip(rows["row_hash"], rows["features"], strict=True)}


def test_flip_and_shift_move_pixels_exactly_and_no_probability_changes_nothing():
    pictures = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 60)
    batch = {"features": pictures, "row_hash": np.array([1, 2])}
    shape = [3, 4, 5]
    unchanged = augment_rows(batch, shape=shape, augment=Augmentation(), black=[0.0] * 3)
    assert np.array_equal(unchanged["features"], pictures) and unchanged["row_hash"] is batch["row_hash"]
    flipped = augment_rows(batch, shape=shape, augment=Augmentation(flip={"probability": 1}), black=[-1.0] * 3)
    assert np.array_equal(flipped["features"].reshape(2, *shape), pictures.reshape(2, *shape)[..., ::-1])
    shifted = augment_rows(batch, shape=shape, augment=Augmentation(crop={"probability": 1, "padding": 1}),
                           black=[-7.0] * 3)["features"].reshape(2, *shape)
    originals = pictures.reshape(2, *shape)
    padded = np.pad(originals, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-7.0)
    for picture, original in zip(shifted, padded, strict=True):  # some window of the padded picture
        windows = [original[:, top:top + 4, left:left + 5] for top in range(3) for left in range(3)]
        assert any(np.array_equal(picture, window) for window in windows)
    turned = augment_rows(batch, shape=shape, augment=Augmentation(rotation={"probability": 1, "degrees": 30}),
                          black=[0.0] * 3)["features"]
    assert turned.shape == pictures.shape and not np.array_equal(turned, pictures)


def test_augmentation_reaches_train_only_and_the_saved_transform_reproduces_val(tmp_path, digit_folder,
                                                                              ray_session):
    # cache: none, so every pass runs the whole pipeline again: val is recomputed, not replayed.
    config = experiment(tmp_path, data={"source": str(digit_folder), "format": "images", "cache": "none",
                                        "image": {"size": [12, 12], "augment": ALL_CHANGES}})
    data = load_config(config).data
    prepared = build_datasets(data, seed=0)
    assert prepared.input_spec.image_shape == [1, 12, 12] and prepared.input_spec.num_classes == 10
    assert sum(prepared.split_rows.values()) == prepared.rows_read == 1797
    unchanged = data.model_copy(update={"image": data.image.model_copy(update={"augment": Augmentation()})})
    plain = build_datasets(unchanged, seed=0, fitted=prepared.preprocessing)

    first, second = by_hash(prepared.datasets["val"]), by_hash(prepared.datasets["val"])
    unaugmented = by_hash(plain.datasets["val"])
    assert first.keys() == second.keys() == unaugmented.keys() and len(first) > 100
    assert all(np.array_equal(first[h], second[h]) and np.array_equal(first[h], unaugmented[h]) for h in first)

    epoch_1, epoch_2 = by_hash(prepared.datasets["train"]), by_hash(prepared.datasets["train"])
    train_plain = by_hash(plain.datasets["train"])
    assert epoch_1.keys() == epoch_2.keys() == train_plain.keys()
    assert not any(np.array_equal(epoch_1[h], epoch_2[h]) for h in epoch_1)  # new changes every pass
    assert not any(np.array_equal(epoch_1[h], train_plain[h]) for h in epoch_1)

    # The transform as saved (a JSON round trip), applied outside Ray to the raw 8x8 files, gives the
    # pipeline's val rows exactly.
    restored = Preprocessing.from_dict(json.loads(json.dumps(prepared.preprocessing.to_dict())))
    files = sorted(digit_folder.glob("*/*.png"))
    raw = {"image": [np.asarray(Image.open(f)) for f in files], "label": [f.parent.name for f in files]}
    tagged = tag_pictures(raw, picture_format=PictureFormat(12, 12, 1), split=data.split, seed=0)
    held_back = picture_rows({k: v[tagged["_in_val"] == 1] for k, v in tagged.items()}, preprocessing=restored)
    outside = dict(zip(held_back["row_hash"].tolist(), held_back["features"], strict=True))
    assert outside.keys() == unaugmented.keys()
    assert all(np.allclose(outside[h], unaugmented[h], atol=1e-6) for h in outside)


def test_a_corrupt_picture_is_named(tmp_path, digit_folder, ray_session):
    broken = tmp_path / "pictures"
    for folder in ("digit_0", "digit_1"):
        (broken / folder).mkdir(parents=True)
        for picture in sorted((digit_folder / folder).glob("*.png"))[:20]:
            (broken / folder / picture.name).write_bytes(picture.read_bytes())
    (broken / "digit_1" / "9999.png").write_bytes(b"\x89PNG not really")
    data = load_config(experiment(tmp_path, data={"source": str(broken), "format": "images"})).data
    with pytest.raises(DataError, match=r"cannot read .*digit_1/9999\.png"):
        build_datasets(data, seed=0)


def test_a_cnn_learns_a_folder_of_pictures_with_augmentation(tmp_path, digit_folder, ray_address):
    config = experiment(tmp_path, run={"name": "pictures"},
                        data={"source": str(digit_folder), "format": "images",
                              "image": {"augment": {"crop": {"probability": 0.5, "padding": 1},
                                                    "noise": {"probability": 0.5, "std": 0.1}}}},
                        model={"name": "cnn", "args": {"channels": [16, 32]}},
                        train={"epochs": 3, "lr": 0.01}, tracking={"mode": "disabled"})
    summary = train(config, ray_address, wandb_mode="disabled")
    assert summary.final["test_accuracy"] > 0.85, summary.final
    checkpoint = max(run_dir(tmp_path, "pictures").glob("step_*"))
    saved = Preprocessing.from_dict(json.loads((checkpoint / "preprocessing.json").read_text()))
    assert saved.image.shape == [1, 8, 8] and saved.classes == [f"digit_{d}" for d in range(10)]
    spec = json.loads((checkpoint / "input_spec.json").read_text())
    assert spec["image_shape"] == [1, 8, 8] and spec["feature_shape"] == [64]

    # Exported and run over one class's folder by `rayspeed predict`: one row per picture, the same class
    # as the export gives in plain torch for the file it names.
    model, out = tmp_path / "model", tmp_path / "threes.parquet"
    assert rayspeed_command("export", str(run_dir(tmp_path, "pictures")), "--out", str(model)).returncode == 0
    result = rayspeed_command("predict", str(model), str(digit_folder / "digit_3"), "--out", str(out),
                              "--address", ray_address)
    assert result.returncode == 0, result.stderr
    predicted = pd.read_parquet(out)
    files = sorted(str(path) for path in (digit_folder / "digit_3").iterdir())
    assert sorted(predicted["path"].str.removeprefix("/").map("/{}".format)) == files
    assert (predicted["prediction"] == "digit_3").mean() > 0.85
    exported = load_exported(model)
    pixels = [np.asarray(Image.open("/" + path.removeprefix("/"))) for path in predicted["path"]]
    with torch.no_grad():
        plain = exported.model(torch.from_numpy(picture_rows({"image": pixels},
                                                             preprocessing=exported.preprocessing)["features"]))
    assert predicted["prediction"].tolist() == [exported.spec.classes[i] for i in plain.argmax(dim=1).tolist()]
