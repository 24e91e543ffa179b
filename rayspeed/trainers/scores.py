"""What `rayspeed evaluate` reports of a split's predictions, by task, computed with scikit-learn's
metrics: classification (accuracy, precision / recall / F1 macro and per class, ROC-AUC, confusion
matrix, log loss), regression (MSE, RMSE, MAE, R2 in the target's units), language modelling (loss,
perplexity)."""

import math

import numpy as np
from sklearn import metrics


def classification_scores(labels: np.ndarray, probabilities: np.ndarray, classes: list) -> dict:
    """`labels` are class indices; `probabilities` one row per label, one column per class. ROC-AUC
    is one-vs-rest (macro over the classes present in the split; binary: the second class's), null
    when the split holds a single class."""
    indices = list(range(len(classes)))
    predicted = probabilities.argmax(axis=1)
    per_class = per_class_scores(labels, predicted, classes)
    return {
        "rows": int(len(labels)),
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "precision_macro": float(np.mean([scores["precision"] for scores in per_class.values()])),
        "recall_macro": float(np.mean([scores["recall"] for scores in per_class.values()])),
        "f1_macro": float(np.mean([scores["f1"] for scores in per_class.values()])),
        "roc_auc": _roc_auc(labels, probabilities, indices),
        "loss": float(metrics.log_loss(labels, probabilities, labels=indices)),
        "per_class": per_class,
        "confusion": metrics.confusion_matrix(labels, predicted, labels=indices).tolist(),
        "classes": [str(name) for name in classes],
    }


def per_class_scores(labels: np.ndarray, predicted: np.ndarray, classes: list) -> dict[str, dict]:
    """Precision, recall, F1 and support of each class (class indices in, class names out)."""
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(classes))), zero_division=0)
    return {str(name): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(classes)}


def confusion_pairs(confusion: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The (actual, predicted) class indices a confusion matrix counts, one pair per row."""
    counts = np.asarray(confusion, dtype=np.int64)
    actual, predicted = np.indices(counts.shape)
    return np.repeat(actual.ravel(), counts.ravel()), np.repeat(predicted.ravel(), counts.ravel())


def _roc_auc(labels: np.ndarray, probabilities: np.ndarray, indices: list[int]) -> float | None:
    present = np.unique(labels)
    if len(present) < 2:
        return None
    if len(indices) == 2:
        return float(metrics.roc_auc_score(labels, probabilities[:, 1]))
    # One-vs-rest over the classes the split holds (a class without rows has no ROC curve).
    return float(np.mean([metrics.roc_auc_score(labels == c, probabilities[:, c]) for c in present]))


def regression_scores(targets: np.ndarray, predicted: np.ndarray) -> dict:
    mse = float(metrics.mean_squared_error(targets, predicted))
    return {"rows": int(len(targets)), "mse": mse, "rmse": math.sqrt(mse),
            "mae": float(metrics.mean_absolute_error(targets, predicted)),
            "r2": float(metrics.r2_score(targets, predicted)) if len(targets) > 1 else None}


def language_model_scores(block_losses: np.ndarray) -> dict:
    """Blocks are all one length, so the mean of their mean losses is the mean per token."""
    loss = float(block_losses.mean())
    return {"blocks": int(len(block_losses)), "loss": loss, "perplexity": math.exp(min(loss, 700.0))}


def describe_scores(scores: dict) -> list[str]:
    """The scores for the console: the headline numbers, then each class's F1 (classification)."""
    head = f"{scores['split']} split, checkpoint {scores['checkpoint']} (step {scores['step']}): "
    shown = [(name, scores[name]) for name in HEADLINE if scores.get(name) is not None]
    lines = [head + ", ".join(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
                              for name, value in shown)]
    if per_class := scores.get("per_class"):
        lines.append("F1 per class: " + ", ".join(f"{name} {values['f1']:.3f}" for name, values in per_class.items()))
    return lines


HEADLINE = ("rows", "blocks", "accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "loss",
            "perplexity", "rmse", "mae", "r2")
