"""Duplicate rows: usable rows identical in every used column share their content hash, so a grouped
count over `_hash` finds them (a shuffle of the hashes only), and one copy of each is kept. Rows that
are dropped anyway (bad values, no label) are left to be counted under their own reason."""

import numpy as np
import pandas as pd
import ray.data
from ray.data.aggregate import Count


def drop_duplicates(tagged: ray.data.Dataset) -> tuple[ray.data.Dataset, int]:
    """The rows with each duplicated usable row kept once, and how many copies were dropped. Two more
    passes over the data: the grouped count, and the copies' pass.

    The duplicated rows' single copies are kept in the object store: they are usually few.
    """
    usable = tagged.filter(expr="_usable == 1")
    counts = (usable.select_columns(["_hash"]).groupby("_hash").aggregate(Count(alias_name="copies"))
              .filter(expr="copies > 1").to_pandas())
    if counts.empty:
        return tagged, 0
    hashes = np.sort(counts["_hash"].to_numpy())
    singles = tagged.map_batches(_without, batch_format="pandas", fn_kwargs={"hashes": hashes})
    copies = (usable.map_batches(_only, batch_format="pandas", fn_kwargs={"hashes": hashes})
              .groupby("_hash").map_groups(_first, batch_format="pandas").materialize())
    return singles.union(copies), int((counts["copies"] - 1).sum())


def _without(batch: pd.DataFrame, *, hashes: np.ndarray) -> pd.DataFrame:
    return batch[~(batch["_hash"].isin(hashes) & (batch["_usable"] == 1))]


def _only(batch: pd.DataFrame, *, hashes: np.ndarray) -> pd.DataFrame:
    return batch[batch["_hash"].isin(hashes)]


def _first(group: pd.DataFrame) -> pd.DataFrame:
    return group.iloc[:1]
