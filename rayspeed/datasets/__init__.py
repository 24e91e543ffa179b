"""Ray Data input: readers, cleaning, deterministic splits and standardization, built once in the driver.

The pipeline (Ray Data) is imported only when it is asked for, so the fitted preprocessing and its
transform (`preprocessing`, `encoding`) load without Ray, as an exported model does."""

from rayspeed.datasets.preprocessing import InputSpec, Preprocessing

__all__ = ["InputSpec", "PreparedData", "Preprocessing", "build_datasets"]


def __getattr__(name: str):
    if name in ("PreparedData", "build_datasets"):
        from rayspeed.datasets import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
