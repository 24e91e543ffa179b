"""Train-split quantiles that are the same on every run: a Ray Data aggregation that keeps, per
column, the values of the rows with the smallest content hashes (a uniform sample, since the hash is
pseudo-random) and reads the quantiles off that sample.

Ray Data's own ApproximateQuantile (a KLL sketch) compacts at random, so two fits of the same data
gave different medians; this sample depends on the rows alone, not on block order or merge order.
With 16,384 rows the rank error of a quantile is at most about 0.4% (one standard deviation).
"""

import numpy as np
from ray.data.aggregate import AggregateFnV2
from ray.data.block import BlockAccessor

SAMPLE_ROWS = 16_384
HASH_COLUMN = "_hash"


class HashSampleQuantiles(AggregateFnV2):
    """Quantiles of column `on` over a hash-chosen sample of its non-missing values."""

    def __init__(self, on: str, quantiles: list[float], *, alias_name: str, sample_rows: int = SAMPLE_ROWS):
        self._quantiles = quantiles
        self._rows = sample_rows
        super().__init__(alias_name, on=on, ignore_nulls=True, zero_factory=lambda: None)

    def aggregate_block(self, block):
        table = BlockAccessor.for_block(block).to_arrow()
        values = table.column(self.get_target_column()).to_numpy(zero_copy_only=False).astype(np.float64)
        hashes = table.column(HASH_COLUMN).to_numpy(zero_copy_only=False).astype(np.int64)
        present = ~np.isnan(values)
        if not present.any():
            return None
        return self._smallest(hashes[present], values[present])

    def combine(self, current, new):
        return self._smallest(np.concatenate([current[0], new[0]]), np.concatenate([current[1], new[1]]))

    def finalize(self, accumulator) -> list[float]:
        return np.quantile(accumulator[1], self._quantiles).tolist()

    def _smallest(self, hashes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The `sample_rows` smallest (hash, value) pairs: ties broken by value, so any order gives the same."""
        order = np.lexsort((values, hashes))[: self._rows]
        return hashes[order], values[order]
