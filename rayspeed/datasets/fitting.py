"""Turns the train split's statistics into the fitted preprocessing (pure: no Ray)."""

from rayspeed.config.data import DataConfig
from rayspeed.datasets.columns import ColumnPlan
from rayspeed.datasets.preprocessing import CategoricalColumn, NumericColumn, Preprocessing
from rayspeed.datasets.statistics import DataStats, quantiles_wanted
from rayspeed.datasets.values import category_of
from rayspeed.errors import DataError


def clip_bounds(stats: DataStats, plan: ColumnPlan, data: DataConfig) -> dict[str, tuple[float, float]]:
    """Each numeric feature's train quantiles at `data.clip_quantiles` (empty when not clipping).

    Raises:
        DataError: a numeric feature with no value in the train split.
    """
    if empty := [c for c in plan.numeric if stats.values[f"mean:{c}"] is None]:
        raise DataError(f"data.feature_columns: {empty} have no value in the train split; leave them out")
    if not data.clip_quantiles:
        return {}
    wanted = quantiles_wanted(data)
    low, high = (wanted.index(q) for q in data.clip_quantiles)
    return {c: (float(stats.values[f"quantiles:{c}"][low]), float(stats.values[f"quantiles:{c}"][high]))
            for c in plan.numeric}


def fit_preprocessing(stats: DataStats, plan: ColumnPlan, data: DataConfig, *, bounds: dict,
                      moments: DataStats | None = None) -> Preprocessing:
    """`bounds`: from `clip_bounds`; `moments`: a second pass over the clipped values, whose means and
    deviations then standardize.

    Raises:
        DataError: a fill value that does not fit its column, or fewer than two classes.
    """
    moments = moments or stats
    numeric = [NumericColumn(name=c, mean=float(moments.values[f"mean:{c}"]), std=_nonzero(moments.values[f"std:{c}"]),
                             fill=_numeric_fill(stats, c, data), clip=bounds.get(c))
               for c in plan.numeric]
    categorical = [CategoricalColumn(name=c, fill=_categorical_fill(stats, c, data),
                                     vocabulary=[str(v) for v, _ in stats.value_counts(c)[:data.max_categories]])
                   for c in plan.categories]
    if data.task == "regression":
        return Preprocessing(label_column=plan.label, task="regression", numeric=numeric, categorical=categorical,
                             categorical_encoding=data.categorical_encoding,
                             target_mean=float(stats.values["mean:label"]),
                             target_std=_nonzero(stats.values["std:label"]))
    classes = class_list([value for value, _ in stats.value_counts("_label")])
    if len(classes) < 2:
        raise DataError(f"data.label_column: {plan.label!r} has {len(classes)} class; need 2 or more")
    return Preprocessing(label_column=plan.label, task="classification", numeric=numeric, categorical=categorical,
                         categorical_encoding=data.categorical_encoding,
                         classes=classes)


def class_list(values) -> list:
    """The classes found, in sorted order (a class's index is its position), missing values left out."""
    return sorted(_plain(value) for value in values if category_of(value) is not None)


def _numeric_fill(stats: DataStats, column: str, data: DataConfig) -> float | None:
    match data.missing:
        case "mean":
            return float(stats.values[f"mean:{column}"])
        case "median":
            return float(stats.values[f"quantiles:{column}"][quantiles_wanted(data).index(0.5)])
        case "mode":
            return float(stats.value_counts(column)[0][0])
        case "constant":
            try:
                return float(data.fill_value)
            except ValueError:
                raise DataError(f"data.fill_value: {data.fill_value!r} is not a number, and {column!r} is "
                                "numeric") from None
    return None  # drop and reject: no missing value reaches the transform


def _categorical_fill(stats: DataStats, column: str, data: DataConfig) -> str | None:
    if data.missing == "mode" and (counts := stats.value_counts(column)):
        return str(counts[0][0])
    return category_of(data.fill_value) if data.missing == "constant" else None


def _nonzero(std) -> float:
    """A constant column keeps std 1 so it stays at 0."""
    return float(std) if std else 1.0


def _plain(value):
    """numpy scalars -> Python values, whole floats -> ints, so classes read well in JSON and YAML."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value
