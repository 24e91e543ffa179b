"""Ray Data input: readers, cleaning, deterministic splits and standardization, built once in the driver."""

from rayspeed.datasets.pipeline import PreparedData, build_datasets
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing

__all__ = ["InputSpec", "PreparedData", "Preprocessing", "build_datasets"]
