"""`rayspeed report`: a run's or a sweep's results as PNG figures and one static HTML page that needs
no server (`report/index.html` in the run directory, beside its figures).

A run: train against val loss (overfitting shows as the curves parting), val accuracy or error, the
learning rate, throughput, and the test confusion matrix. A sweep: every trial's learning curve, the
metric against each searched value (both drawn by the sweep itself), and a table of the trials.
"""

import html
import json

import matplotlib.pyplot as plt

from rayspeed.errors import RunStateError
from rayspeed.runs import plots
from rayspeed.runs.layout import INPUT_SPEC_FILE, SWEEP_CURVES_FILE, SWEEP_FILE, SWEEP_VALUES_FILE
from rayspeed.runs.metrics_log import read_metrics
from rayspeed.runs.storage import RunStorage
from rayspeed.runs.summary import scalars_of

REPORT_DIR = "report"
PAGE = "index.html"
# The val metric drawn beside the loss, first one a run has: classification, regression, language model.
QUALITY = ("val_accuracy", "val_rmse", "val_perplexity")


def write_report(storage: RunStorage) -> list[str]:
    """Writes the report of the run or sweep in `storage`; returns the files written, the page first
    (paths inside the run directory).

    Raises:
        RunStateError: the directory holds neither a run's metrics nor a sweep's results.
    """
    if storage.exists(SWEEP_FILE):
        figures, body = _sweep(storage)
    else:
        rows = read_metrics(storage)
        if not rows:
            raise RunStateError(f"{storage.display()} holds no metrics.jsonl rows and no {SWEEP_FILE}: "
                                "nothing to report")
        spec = json.loads(storage.read_text(INPUT_SPEC_FILE) or "{}")
        figures, body = _run(rows, classes=spec.get("classes") or [], title=storage.name)
    for name, content in figures.items():
        storage.write(content, REPORT_DIR, name)
    images = "".join(f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}"></figure>\n'
                     for name in figures)
    page = (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(storage.name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}img{max-width:100%}</style></head>"
            f"<body><h1>{html.escape(storage.name)}</h1>\n{body}\n{images}</body></html>\n")
    storage.write(page, REPORT_DIR, PAGE)
    return [f"{REPORT_DIR}/{name}" for name in [PAGE, *figures]]


def _run(rows: list[dict], *, classes: list, title: str) -> tuple[dict[str, bytes], str]:
    figures = {"curves.png": _curves(rows, title=title),
               "learning_rate.png": _series(rows, "lr", label="learning rate", title=title),
               "throughput.png": _series(rows, "samples_per_s", label="samples per second", title=title)}
    final = rows[-1]
    if final.get("test_confusion"):
        figures["confusion_matrix.png"] = plots.confusion_matrix(
            final["test_confusion"], classes or list(range(len(final["test_confusion"]))), title=f"{title}: test set")
    numbers = {key: value for key, value in scalars_of(final).items() if not isinstance(value, bool)}
    return figures, f"<h2>Last step</h2>\n{_table([numbers])}"


def _curves(rows: list[dict], *, title: str) -> bytes:
    """Loss of train and val on the left, the val quality metric on the right."""
    figure, (loss, quality) = plt.subplots(1, 2, figsize=(12, 4))
    trained = [r for r in rows if "train_loss" in r]  # not step 0's row: the score before training (init_from)
    loss.plot([r["step"] for r in trained], [r["train_loss"] for r in trained], label="train loss")
    val = [r for r in rows if "val_loss" in r]
    loss.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val loss")
    loss.set_xlabel("optimizer step")
    loss.set_ylabel("loss")
    loss.legend()
    metric = next((m for m in QUALITY if any(m in r for r in val)), None)
    if not metric:
        figure.delaxes(quality)
    else:
        quality.plot([r["step"] for r in val if metric in r], [r[metric] for r in val if metric in r], "s-",
                     color="tab:green", label=metric)
        quality.set_xlabel("optimizer step")
        quality.set_ylabel(metric)
        quality.legend()
    figure.suptitle(title)
    return plots.png(figure)


def _series(rows: list[dict], key: str, *, label: str, title: str) -> bytes:
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([r["step"] for r in rows if key in r], [r[key] for r in rows if key in r])
    axis.set_xlabel("optimizer step")
    axis.set_ylabel(label)
    axis.set_title(title)
    return plots.png(figure)


def _sweep(storage: RunStorage) -> tuple[dict[str, bytes], str]:
    trials = json.loads(storage.read_text(SWEEP_FILE))
    figures = {}
    for name in (SWEEP_CURVES_FILE, SWEEP_VALUES_FILE):
        if storage.exists(name):  # drawn when the sweep ended
            figures[name] = storage.read_bytes(name)
    table = [{"trial": t["trial"], "status": t["status"], **t["values"], "best": t["best"],
              "best epoch": t["best_epoch"]} for t in trials]
    return figures, f"<h2>{len(trials)} trials</h2>\n{_table(table)}"


def _table(records: list[dict]) -> str:
    columns = list(dict.fromkeys(key for record in records for key in record))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_shown(r.get(c)))}</td>" for c in columns) + "</tr>\n"
                   for r in records)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
