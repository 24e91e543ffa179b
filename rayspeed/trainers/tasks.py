"""What is being learned, as the loop and evaluation need it: the head size, how a batch becomes
model inputs, the loss, and the metrics of a split: classification, regression and language
modelling (whose inputs decide their own casting: token ids are never cast to bf16).
"""

import math
from typing import Protocol

import torch
import torch.nn.functional as F

from rayspeed.datasets.preprocessing import InputSpec


class Task(Protocol):
    name: str

    def output_size(self, spec: InputSpec) -> int: ...

    def inputs(self, batch: dict, *, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The model's positional arguments."""
        ...

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor: ...

    def new_totals(self, *, device) -> torch.Tensor: ...

    def add_to_totals(self, totals: torch.Tensor, outputs: torch.Tensor, batch: dict) -> None: ...

    def metrics(self, totals: torch.Tensor, *, split: str, with_details: bool) -> dict: ...

    def predict(self, outputs: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """One prediction per row, in the data's own terms (`rayspeed evaluate` and `predict`)."""
        ...

    def window_metrics(self, window: dict) -> dict:
        """Extra train metrics of a report window (e.g. tokens per second), from the meter's."""
        ...


class RowTask:
    """A task on rows of features: float numbers (cast to the training precision) plus, under
    `categorical_encoding: ids`, integer category slots; or token ids (text, never cast)."""

    def __init__(self, spec: InputSpec):
        self._tokens = spec.vocab_size is not None

    def inputs(self, batch: dict, *, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        features = batch["features"].long() if self._tokens else batch["features"].to(dtype)
        return (features, batch["categories"]) if "categories" in batch else (features,)

    def window_metrics(self, window: dict) -> dict:
        return {}


class Classification(RowTask):
    """Class logits; cross entropy (label-smoothed for training), accuracy, macro F1 and a confusion matrix."""

    name = "classification"

    def __init__(self, spec: InputSpec, *, label_smoothing: float = 0.0):
        super().__init__(spec)
        self._classes = spec.num_classes
        self._smoothing = label_smoothing

    def output_size(self, spec: InputSpec) -> int:
        return spec.num_classes

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), batch["label"], label_smoothing=self._smoothing)

    def new_totals(self, *, device) -> torch.Tensor:
        """[loss sum, rows, confusion counts (true x predicted)], all-reduced as one tensor."""
        return torch.zeros(2 + self._classes**2, dtype=torch.float64, device=device)

    def add_to_totals(self, totals: torch.Tensor, outputs: torch.Tensor, batch: dict) -> None:
        labels = batch["label"]
        totals[0] += F.cross_entropy(outputs.float(), labels, reduction="sum")
        totals[1] += labels.numel()
        pairs = labels * self._classes + outputs.argmax(dim=1)
        totals[2:] += torch.bincount(pairs, minlength=self._classes**2).to(totals.dtype)

    def metrics(self, totals: torch.Tensor, *, split: str, with_details: bool) -> dict:
        values = totals.tolist()  # a host sync, once per evaluation
        rows = max(values[1], 1)
        confusion = [[int(v) for v in values[2 + i * self._classes: 2 + (i + 1) * self._classes]]
                     for i in range(self._classes)]
        metrics = {f"{split}_loss": values[0] / rows,
                   f"{split}_accuracy": sum(confusion[i][i] for i in range(self._classes)) / rows,
                   f"{split}_f1": macro_f1(confusion)}
        if with_details:
            metrics[f"{split}_confusion"] = confusion
        return metrics

    def predict(self, outputs: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """The class index and every class's probability."""
        return {"prediction": outputs.argmax(dim=1), "probabilities": outputs.float().softmax(dim=1)}


def macro_f1(confusion: list[list[int]]) -> float:
    """The mean over every class of F1 (2 x true positives / (predicted + actual)); a class never
    predicted nor present counts 0 (scikit-learn's f1_score(average="macro", labels=all classes))."""
    classes = len(confusion)
    scores = []
    for c in range(classes):
        predicted = sum(confusion[r][c] for r in range(classes))
        actual = sum(confusion[c])
        scores.append(2 * confusion[c][c] / (predicted + actual) if predicted + actual else 0.0)
    return sum(scores) / max(classes, 1)


class Regression(RowTask):
    """One output predicting the standardized target; mean squared error; errors reported in the
    target's own units (rmse, mae) and r2."""

    name = "regression"

    def __init__(self, spec: InputSpec):
        super().__init__(spec)
        self._scale, self._mean = spec.target_std, spec.target_mean

    def output_size(self, spec: InputSpec) -> int:
        return 1

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.mse_loss(outputs.float().squeeze(-1), batch["label"])

    def new_totals(self, *, device) -> torch.Tensor:
        """[squared error sum, absolute error sum, rows, target sum, target square sum] (standardized)."""
        return torch.zeros(5, dtype=torch.float64, device=device)

    def add_to_totals(self, totals: torch.Tensor, outputs: torch.Tensor, batch: dict) -> None:
        target = batch["label"].double()
        error = outputs.double().squeeze(-1) - target
        totals += torch.stack([error.square().sum(), error.abs().sum(), totals.new_tensor(target.numel()),
                               target.sum(), target.square().sum()])

    def metrics(self, totals: torch.Tensor, *, split: str, with_details: bool) -> dict:
        squared, absolute, rows, total, square = totals.tolist()
        rows = max(rows, 1)
        spread = square - total * total / rows
        return {f"{split}_loss": squared / rows, f"{split}_rmse": (squared / rows) ** 0.5 * self._scale,
                f"{split}_mae": absolute / rows * self._scale, f"{split}_r2": 1 - squared / spread if spread else 0.0}

    def predict(self, outputs: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """The target in its own units."""
        return {"prediction": outputs.double().squeeze(-1) * self._scale + self._mean}


class LanguageModeling:
    """Next-token prediction over blocks of tokens: cross entropy per token, perplexity, tokens/s."""

    name = "language_modeling"

    def __init__(self, spec: InputSpec):
        self._context = spec.num_features - 1

    def output_size(self, spec: InputSpec) -> int:
        return spec.vocab_size

    def inputs(self, batch: dict, *, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        return (batch["features"][:, :-1].long(),)  # token ids: never cast to the training precision

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(outputs.float().flatten(0, 1), batch["features"][:, 1:].long().flatten())

    def new_totals(self, *, device) -> torch.Tensor:
        """[loss sum over tokens, tokens]."""
        return torch.zeros(2, dtype=torch.float64, device=device)

    def add_to_totals(self, totals: torch.Tensor, outputs: torch.Tensor, batch: dict) -> None:
        targets = batch["features"][:, 1:].long().flatten()
        totals[0] += F.cross_entropy(outputs.float().flatten(0, 1), targets, reduction="sum")
        totals[1] += targets.numel()

    def metrics(self, totals: torch.Tensor, *, split: str, with_details: bool) -> dict:
        loss, tokens = totals.tolist()
        loss /= max(tokens, 1)
        return {f"{split}_loss": loss, f"{split}_perplexity": math.exp(min(loss, 700.0))}

    def predict(self, outputs: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Each block's mean cross entropy per predicted token (blocks are all one length)."""
        losses = F.cross_entropy(outputs.float().transpose(1, 2), batch["features"][:, 1:].long(), reduction="none")
        return {"loss": losses.mean(dim=1)}

    def window_metrics(self, window: dict) -> dict:
        return {"tokens_per_s": window["samples_per_s"] * self._context}


TASKS = {"classification": Classification, "regression": Regression, "language_modeling": LanguageModeling}


def task_for(spec: InputSpec, *, label_smoothing: float = 0.0) -> Task:
    if spec.task == "classification":
        return Classification(spec, label_smoothing=label_smoothing)
    return TASKS[spec.task](spec)
