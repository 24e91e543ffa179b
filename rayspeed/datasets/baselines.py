"""What the data alone reaches, printed beside a model's metric so a run shows it learned something:
`<metric>_<how>` -> value."""

import math

import numpy as np


def unigram_perplexity(train_counts: np.ndarray, val_counts: np.ndarray) -> dict[str, float]:
    """exp of the val targets' mean negative log probability under add-one smoothed train frequencies."""
    if not val_counts.sum():
        return {}
    log_p = np.log((train_counts + 1.0) / (train_counts.sum() + len(train_counts)))
    return {"val_perplexity_unigram": float(math.exp(-(val_counts * log_p).sum() / val_counts.sum()))}


def majority_class(train: dict[str, int], test: dict[str, int], *, classes: list) -> dict[str, float]:
    """Test accuracy and macro F1 of always predicting the train split's most frequent class: F1 is
    2p / (1 + p) for that class (p its test share; recall 1) and 0 for every other."""
    tested = sum(test.values())
    if not tested or not train:
        return {}
    majority = max(sorted(train), key=train.get)
    share = test.get(majority, 0) / tested
    return {"test_accuracy_majority": share, "test_f1_majority": 2 * share / (1 + share) / len(classes)}
