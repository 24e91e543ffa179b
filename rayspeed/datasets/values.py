"""One canonical form for a column's values whatever the block or reader produced them, so hashes,
vocabularies and fills agree: numbers as float64 (non-finite values become missing), categories as
strings where a whole number reads `3` whether its block held floats, integers or text."""

import numpy as np
import pandas as pd


def as_numbers(column: pd.Series) -> pd.Series:
    """float64; text that is not a number, and infinities, become NaN (the caller counts them bad)."""
    if isinstance(column.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(column):
        column = column.astype(object)
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    return values.where(np.isfinite(values.to_numpy()))


def as_categories(column: pd.Series) -> pd.Series:
    """Strings, each value formatted on its own: whole numbers without a decimal point."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return pd.Series([category_of(v) for v in column.to_numpy(dtype=np.float64, na_value=np.nan)],
                         index=column.index, dtype="string")
    return column.map(category_of, na_action="ignore").astype("string")


def category_of(value) -> str | None:
    """The category string of one value (also of `data.fill_value`, so a fill of 3 matches code 3)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 2**63 else repr(number)
    return str(value)
