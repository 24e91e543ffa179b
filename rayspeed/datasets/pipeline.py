"""`build_datasets`: the one entry from a `data` section to model-ready splits, whatever the data are."""

from rayspeed.config.data import DataConfig
from rayspeed.datasets.picture_pipeline import build_picture_datasets
from rayspeed.datasets.prepared import PreparedData
from rayspeed.datasets.preprocessing import Preprocessing
from rayspeed.datasets.table_pipeline import build_table_datasets
from rayspeed.datasets.text_pipeline import build_text_datasets

BUILDERS = {"table": build_table_datasets, "images": build_picture_datasets, "text": build_text_datasets}


def build_datasets(data: DataConfig, *, seed: int, fitted: Preprocessing | None = None) -> PreparedData:
    """The splits of `data.source` (a table, pictures or text), built in the driver as lazy Ray Datasets.

    Args:
        data: the `data` section.
        seed: the split and file-order seed (`train.seed`).
        fitted: the preprocessing a resumed run was trained with; reused instead of refitted.

    Raises:
        DataError: naming the file, column or setting at fault.
    """
    return BUILDERS[data.modality](data, seed=seed, fitted=fitted)
