"""Pictures in: a folder with one subfolder of pictures per class, or a built-in set, read by Ray Data
with every picture decoded to the same size and channels, then tagged with its split and hash the
way table rows are (`rows.split_codes`), so splits are deterministic and identical pictures share one.
"""

from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs
import ray.data
from PIL import Image
from ray.data import FileShuffleConfig
from ray.data.datasource import Partitioning

from rayspeed.config.data import DataConfig, SplitFractions
from rayspeed.datasets.builtin import load_builtin
from rayspeed.datasets.preprocessing import ImageTransform
from rayspeed.datasets.readers import IMAGE_SUFFIXES, files_in_class_folders, from_frame, source_filesystem
from rayspeed.datasets.rows import content_digests, split_tags

IMAGE, LABEL = "image", "label"
MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class PictureFormat:
    """What every picture is decoded to."""

    height: int
    width: int
    channels: int


def read_pictures(data: DataConfig, *, seed: int, fitted: ImageTransform | None = None
                  ) -> tuple[ray.data.Dataset, PictureFormat]:
    """Lazily reads the pictures (`image` uint8, `label` the class folder's name), each decoded to the
    size and channels a resumed run was fitted with (`fitted`), else the configured ones, else those
    of the first picture. A folder's files come in a new order on every pass, as table files do.

    Raises:
        DataError: the source cannot be listed, holds no picture in a class folder, or holds one
            outside class folders.
    """
    if data.is_builtin:
        frame = load_builtin(data.source)
        first = frame[IMAGE].iloc[0]
        found = PictureFormat(first.shape[0], first.shape[1], first.shape[2] if first.ndim == 3 else 1)
        return from_frame(frame), _decided(data, found, fitted)
    filesystem, root = source_filesystem(data.source)
    picture_format = _decided(data, _first_picture(filesystem, root, data.source), fitted)
    dataset = ray.data.read_images(
        root, filesystem=filesystem, size=(picture_format.height, picture_format.width),
        mode=MODES[picture_format.channels], include_paths=True,
        partitioning=Partitioning("dir", field_names=[LABEL], base_dir=root, filesystem=filesystem),
        shuffle=FileShuffleConfig(seed=seed, reseed_after_execution=True))
    return dataset, picture_format


def tag_pictures(batch: dict, *, picture_format: PictureFormat, split: SplitFractions, seed: int) -> dict:
    """`image` as (rows, height, width, channels) uint8, `label` as text, `_hash` of the pixels, the
    split and its flags; every decoded picture is usable."""
    images = as_pixels(batch[IMAGE], picture_format)
    digests = content_digests([image.tobytes() for image in images], seed=seed)
    return {IMAGE: images, LABEL: np.asarray([str(label) for label in batch[LABEL]], dtype=object),
            **split_tags(digests, split)}


def as_pixels(images, picture_format: PictureFormat) -> np.ndarray:
    """Decoded pictures as one (rows, height, width, channels) uint8 array, resizing and converting
    any that differ (raw pictures handed to prediction, a built-in set with another size)."""
    wanted = (picture_format.height, picture_format.width, picture_format.channels)
    out = np.empty((len(images), *wanted), dtype=np.uint8)
    for index, image in enumerate(images):
        image = np.asarray(image)
        pixels = image if image.ndim == 3 else image[..., None]
        if pixels.shape != wanted:
            picture = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)  # as Ray's reader:
            picture = picture.resize((wanted[1], wanted[0]), Image.Resampling.BILINEAR).convert(MODES[wanted[2]])
            pixels = np.asarray(picture).reshape(wanted)
        out[index] = pixels
    return out


def _decided(data: DataConfig, found: PictureFormat, fitted: ImageTransform | None) -> PictureFormat:
    if fitted is not None:  # the same pixels, hence the same splits, as the run being resumed
        return PictureFormat(fitted.height, fitted.width, fitted.channels)
    size, channels = data.image.size, data.image.channels
    height, width = size or (found.height, found.width)
    return PictureFormat(height, width, channels or found.channels)


def _first_picture(filesystem: pafs.FileSystem, root: str, source: str) -> PictureFormat:
    """The size and channels of the first picture, once every picture is known to be in a class folder."""
    pictures = files_in_class_folders(filesystem, root, source=source, suffixes=IMAGE_SUFFIXES, what="pictures")
    with filesystem.open_input_file(pictures[0]) as stream:
        picture = Image.open(stream)
        picture.load()
    return PictureFormat(picture.height, picture.width, 1 if picture.mode in ("L", "1", "I", "F") else 3)
