"""Pictures of a finished run: loss curves and the test confusion matrix, as PNG bytes."""

import io

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402


def loss_curves(rows: list[dict], *, title: str) -> bytes:
    figure, axis = plt.subplots(figsize=(7, 4))
    trained = [r for r in rows if "train_loss" in r]  # not step 0's row: the score before training (init_from)
    axis.plot([r["step"] for r in trained], [r["train_loss"] for r in trained], label="train loss")
    val = [r for r in rows if "val_loss" in r]
    if val:
        axis.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val loss")
    if val and "val_accuracy" in val[0]:
        accuracy = axis.twinx()
        accuracy.plot([r["step"] for r in val], [r["val_accuracy"] for r in val], "s--", color="tab:green",
                      label="val accuracy")
        accuracy.set_ylabel("accuracy")
        accuracy.set_ylim(0, 1)
        accuracy.legend(loc="center right")
    axis.set_xlabel("optimizer step")
    regression = bool(val) and "val_rmse" in val[0]
    axis.set_ylabel("mean squared error (standardized target)" if regression else "cross-entropy loss")
    axis.set_title(title)
    axis.legend(loc="upper right")
    return png(figure)


def confusion_matrix(matrix: list[list[int]], classes: list, *, title: str) -> bytes:
    size = max(4, 0.5 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    ticks = range(len(classes))
    long_names = max(len(str(c)) for c in classes) > 4  # e.g. "T-shirt/top": slanted, or they overlap
    axis.set_xticks(ticks, [str(c) for c in classes], rotation=45 if long_names else 0,
                    ha="right" if long_names else "center")
    axis.set_yticks(ticks, [str(c) for c in classes])
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axis.text(j, i, count, ha="center", va="center", color="white" if count > peak / 2 else "black")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    return png(figure)


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
