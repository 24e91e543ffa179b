"""Ray Data input: readers, cleaning, deterministic splits and standardization, built once in the driver."""

from rayspeed.datasets.pipeline import PreparedData, build_datasets

__all__ = ["PreparedData", "build_datasets"]
