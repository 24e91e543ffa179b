"""`data.windows`: a table of time-ordered rows read as fixed-length windows (forecasting, sequence models)."""

from pydantic import Field, PositiveInt, field_validator

from rayspeed.config.section import Section


class WindowConfig(Section):
    """Each example is `length` consecutive rows of one series (their features, oldest first) and the
    label `horizon` rows after the window's last row. Splits are by time, not at random: a window goes
    to the split of its label's time, the first `split.train` of the time span training, then val,
    then test, so no later value leaks into training. Cleaning and standardization are fitted on the
    train period's rows; a window whose rows are not each `every` apart (a gap: missing or dropped
    rows) is left out and counted."""

    time_column: str
    """Column ordering the rows: timestamps (ISO text or dates) or numbers."""
    every: str = "1"
    """Spacing of consecutive rows: a duration for timestamps ("1h", "15min", "1D"), a number otherwise."""
    series_column: str | None = None
    """Column naming independent series (a station, a store); windows never mix two."""
    length: PositiveInt = 24
    """Rows in each window."""
    horizon: PositiveInt = Field(1)
    """How many rows after the window's last row the label is taken (1: the next row's)."""

    @field_validator("every")
    @classmethod
    def _a_spacing(cls, every: str) -> str:
        try:
            spacing = float(every)
        except ValueError:
            import pandas as pd  # only for a duration; config validation stays light otherwise

            try:
                spacing = pd.Timedelta(every).total_seconds()
            except ValueError:
                raise ValueError(f"{every!r} is neither a number nor a duration like '1h' or '15min'") from None
        if spacing <= 0:
            raise ValueError(f"must be positive; got {every!r}")
        return every
