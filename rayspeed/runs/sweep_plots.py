"""Pictures of a finished sweep, as PNG bytes: the metric against each searched value, and every
trial's learning curve with early-stopped and failed trials drawn apart."""

import math

import matplotlib.pyplot as plt

from rayspeed.runs.plots import png

STYLES = {"finished": ("tab:blue", "-", "o"), "stopped early": ("tab:orange", "--", "x"),
          "error": ("tab:red", ":", "v")}


def metric_by_value(trials: list[dict], *, paths: list[str], log_paths: set[str], metric: str, title: str) -> bytes:
    """One panel per searched path: each trial's best `metric` at its value."""
    figure, axes = plt.subplots(1, len(paths), figsize=(4.5 * len(paths), 4), squeeze=False)
    for axis, path in zip(axes[0], paths, strict=True):
        values = [trial["values"].get(path) for trial in trials]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        labels = sorted({str(v) for v in values}) if not numeric else []
        for status, (color, _, marker) in STYLES.items():
            chosen = [t for t in trials if t["status"] == status and t["best"] is not None]
            xs = [t["values"].get(path) if numeric else labels.index(str(t["values"].get(path))) for t in chosen]
            axis.scatter(xs, [t["best"] for t in chosen], color=color, marker=marker, label=status)
        if not numeric:
            axis.set_xticks(range(len(labels)), labels, rotation=20)
        elif path in log_paths:
            axis.set_xscale("log")
        axis.set_xlabel(path)
        axis.set_ylabel(f"best {metric}")
    axes[0][0].legend()
    figure.suptitle(title)
    return png(figure)


def learning_curves(trials: list[dict], *, metric: str, best_trial: str | None, title: str) -> bytes:
    """`metric` by epoch for every trial; early stops end in an x, the best trial is drawn thick."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for trial in trials:
        points = [(row["epoch"], row[metric]) for row in trial["history"]
                  if metric in row and not math.isnan(row[metric])]
        if not points:
            continue
        color, line, marker = STYLES.get(trial["status"], STYLES["finished"])
        epochs, values = zip(*points, strict=True)
        thick = trial["trial"] == best_trial
        axis.plot(epochs, values, linestyle=line, color=color, linewidth=2.5 if thick else 1, alpha=0.9)
        axis.plot(epochs[-1], values[-1], marker=marker, color=color)
        if thick:
            axis.annotate(f"best: {trial['trial']}", (epochs[-1], values[-1]), textcoords="offset points",
                          xytext=(-40, 8))
    for status, (color, line, marker) in STYLES.items():
        axis.plot([], [], linestyle=line, marker=marker, color=color, label=status)
    axis.set_xlabel("epoch")
    axis.set_ylabel(metric)
    axis.set_title(title)
    axis.legend()
    return png(figure)
