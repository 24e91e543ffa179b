"""Pictures: the one statistics pass (rows per split, classes, each channel's mean and deviation over
the train split), the fitted transform, and that transform applied to a batch."""

import numpy as np
import ray.data
from ray.data.aggregate import Count, Sum, ValueCounter

from rayspeed.datasets.fitting import class_list
from rayspeed.datasets.images import IMAGE, LABEL, PictureFormat, as_pixels
from rayspeed.datasets.preprocessing import ImageTransform, Preprocessing
from rayspeed.datasets.rows import SPLIT_FLAGS
from rayspeed.datasets.statistics import aggregate_streaming
from rayspeed.errors import DataError


def measure_pictures(tagged: ray.data.Dataset, picture_format: PictureFormat) -> dict:
    """`rows`, one count per split flag, `counts:label` (every split's classes) and per channel c
    the train split's pixel sums `sum:c`, `square:c` over `pixels` values, pixels scaled to [0, 1]."""
    channels = range(picture_format.channels)
    aggregations = [Count(alias_name="rows"), *(Sum(flag, alias_name=flag) for flag in SPLIT_FLAGS.values()),
                    ValueCounter(LABEL, alias_name="counts:label"), Sum("_pixels", alias_name="pixels"),
                    *(Sum(f"_{kind}:{c}", alias_name=f"{kind}:{c}") for kind in ("sum", "square") for c in channels)]
    return aggregate_streaming(tagged.map_batches(_statistics_view, batch_format="numpy"), aggregations)


def _statistics_view(batch: dict) -> dict:
    """Per row: its flags and label, and (train rows only) its pixel count and per-channel sums."""
    train = batch[SPLIT_FLAGS["train"]].astype(np.float64)
    pixels = batch[IMAGE].astype(np.float64) / 255.0  # rows, height, width, channels
    view = {flag: batch[flag] for flag in SPLIT_FLAGS.values()} | {LABEL: batch[LABEL]}
    view["_pixels"] = train * pixels.shape[1] * pixels.shape[2]
    for c in range(pixels.shape[3]):
        view[f"_sum:{c}"] = train * pixels[..., c].sum(axis=(1, 2))
        view[f"_square:{c}"] = train * np.square(pixels[..., c]).sum(axis=(1, 2))
    return view


def fit_pictures(found: dict, picture_format: PictureFormat) -> Preprocessing:
    """Each channel standardized by the train split's pixels; the classes sorted.

    Raises:
        DataError: fewer than two classes.
    """
    means, stds = [], []
    for c in range(picture_format.channels):
        mean = found[f"sum:{c}"] / found["pixels"]
        means.append(float(mean))
        stds.append(float(np.sqrt(max(found[f"square:{c}"] / found["pixels"] - mean * mean, 0.0))) or 1.0)
    counts = found["counts:label"]
    transform = ImageTransform(height=picture_format.height, width=picture_format.width,
                               channels=picture_format.channels, mean=means, std=stds)
    classes = class_list(counts["values"])
    if len(classes) < 2:
        raise DataError(f"data.source: the pictures are in {len(classes)} class folder; need 2 or more")
    return Preprocessing(label_column=LABEL, task="classification", numeric=[], classes=classes, image=transform)


def picture_rows(batch: dict, *, preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """float32 `features`: the pictures standardized and laid out channels first, flattened; and
    where the batch has them, `label` (class index) and `row_hash`. Raw decoded pictures work too."""
    transform = preprocessing.image
    pixels = as_pixels(batch[IMAGE], PictureFormat(transform.height, transform.width, transform.channels))
    scaled = (pixels.astype(np.float32) / 255.0 - np.float32(transform.mean)) / np.float32(transform.std)
    rows = {"features": np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)).reshape(len(pixels), -1)}
    if LABEL in batch:
        index = {name: i for i, name in enumerate(preprocessing.classes)}
        rows["label"] = np.asarray([index[str(label)] for label in batch[LABEL]], dtype=np.int64)
    if "_hash" in batch:
        rows["row_hash"] = batch["_hash"].astype(np.int64)
    return rows
