"""Built-in datasets that ship with installed packages, so they work offline."""

import pandas as pd

from rayspeed.errors import DataError


def load_builtin(name: str) -> pd.DataFrame:
    """A built-in dataset as a DataFrame of numeric feature columns plus `label`."""
    if name == "digits":
        return _digits()
    raise DataError(f"data.source: unknown built-in dataset {name!r}")


def _digits() -> pd.DataFrame:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): real data, no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    frame = pd.DataFrame(bunch.data, columns=[f"pixel_{i}" for i in range(bunch.data.shape[1])])
    frame["label"] = bunch.target
    return frame
