"""Results as W&B media: a confusion matrix as W&B's confusion-matrix chart with its per-class
precision, recall and F1 as a table, and the run's figures as images."""

import io

from rayspeed.runs.storage import RunStorage
from rayspeed.trainers.scores import confusion_pairs, per_class_scores

PER_CLASS_COLUMNS = ("class", "precision", "recall", "f1", "support")


def classification_media(prefix: str, confusion: list[list[int]], classes: list, *,
                         per_class: dict[str, dict] | None = None) -> dict:
    """`<prefix>/confusion_matrix` (the chart; its table is `<prefix>/confusion_matrix_table`) and
    `<prefix>/per_class`; the per-class scores are computed from the matrix unless given."""
    import wandb

    names = [str(name) for name in classes]
    actual, predicted = confusion_pairs(confusion)
    per_class = per_class or per_class_scores(actual, predicted, names)
    table = wandb.Table(columns=list(PER_CLASS_COLUMNS),
                        data=[[name, *(scores[column] for column in PER_CLASS_COLUMNS[1:])]
                              for name, scores in per_class.items()])
    # W&B's confusion-matrix chart over the matrix's cells (wandb.plot.confusion_matrix would count
    # every row again in Python).
    cells = wandb.Table(columns=["Actual", "Predicted", "nPredictions"],
                        data=[[names[i], names[j], int(count)] for i, row in enumerate(confusion)
                              for j, count in enumerate(row)])
    chart = wandb.plot_table("wandb/confusion_matrix/v1", cells,
                             {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
                             {"title": f"{prefix}: confusion matrix"})
    return {f"{prefix}/confusion_matrix": chart, f"{prefix}/per_class": table}


def figures(storage: RunStorage, names: list[str]) -> dict:
    """The PNG figures `names` of the run directory that exist, as `figures/<stem>` images."""
    import wandb
    from PIL import Image

    found = {name: storage.read_bytes(name) for name in names}
    return {f"figures/{name.rsplit('.', 1)[0]}": wandb.Image(Image.open(io.BytesIO(content)))
            for name, content in found.items() if content is not None}
