"""The picture pipeline: read (decode, resize) -> tag (split, hash) -> one statistics pass -> fit the
per-channel normalization on train -> encode each split -> augment the train split only."""

from rayspeed.config.data import DataConfig
from rayspeed.datasets.augmentation import augment_rows
from rayspeed.datasets.images import read_pictures, tag_pictures
from rayspeed.datasets.picture_transform import fit_pictures, measure_pictures, picture_rows
from rayspeed.datasets.prepared import PreparedData, encode_splits, named_data_errors
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.datasets.rows import SPLIT_FLAGS
from rayspeed.errors import DataError


def build_picture_datasets(data: DataConfig, *, seed: int, fitted: Preprocessing | None = None) -> PreparedData:
    """Builds the splits from one statistics pass over the pictures.

    Raises:
        DataError: unreadable source (naming the file), no class folders, fewer than two classes, an
            empty train split.
    """
    with named_data_errors(data):
        source, picture_format = read_pictures(data, seed=seed, fitted=fitted.image if fitted else None)
        tagged = source.map_batches(tag_pictures, batch_format="numpy", fn_kwargs={
            "picture_format": picture_format, "split": data.split, "seed": seed})
        found = measure_pictures(tagged, picture_format)
        split_rows = {name: int(found[flag] or 0) for name, flag in SPLIT_FLAGS.items()}
        if not split_rows["train"]:
            raise DataError(f"data.source: no training pictures out of {found['rows'] or 0} read")
        preprocessing = fitted or fit_pictures(found, picture_format)
        transform = preprocessing.image
        augment = data.image.augment
        black = [-mean / std for mean, std in zip(transform.mean, transform.std, strict=True)]
        datasets = encode_splits(
            tagged, picture_rows, preprocessing=preprocessing, data=data, seed=seed, batch_format="numpy",
            train_rows=split_rows["train"],
            train_only=(augment_rows, {"shape": transform.shape, "augment": augment, "black": black})
            if augment.enabled else None)
    return PreparedData(datasets=datasets, preprocessing=preprocessing, input_spec=InputSpec.of(preprocessing),
                        rows_read=int(found["rows"]), dropped={}, missing_values={}, split_rows=split_rows)
