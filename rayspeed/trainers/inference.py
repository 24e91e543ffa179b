"""A consolidated model run over a Ray Dataset of model-ready rows: an actor pool in which every actor
builds the model once (from weights put once in the object store) and gives one prediction per row,
in the order of its input (`rayspeed evaluate` and `rayspeed predict`)."""

import numpy as np
import ray
import ray.data
import torch
from torch import nn

from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.trainers.exported import exported_model, model_section
from rayspeed.trainers.tasks import task_for

BATCH_ROWS = 256


class ModelOnBatches:
    """The Ray Data actor: the model on its device (one GPU when given one), in eval mode."""

    def __init__(self, *, model: dict, preprocessing: dict, weights: list[ray.ObjectRef], keep: tuple[str, ...]):
        spec = InputSpec.of(Preprocessing.from_dict(preprocessing))
        self._device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
        self._model = exported_model(model_section(model), preprocessing)
        self._model.load_state_dict(ray.get(weights[0]), strict=True)
        self._model.to(self._device).eval()
        self._task = task_for(spec)
        self._keep = keep

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = {name: torch.from_numpy(np.ascontiguousarray(values)).to(self._device)
                for name, values in batch.items() if name in ("features", "categories", "label")}
        outputs = self._model(*self._task.inputs(rows, dtype=torch.float32))
        predicted = {name: values.cpu().numpy() for name, values in self._task.predict(outputs, rows).items()}
        return predicted | {name: batch[name] for name in self._keep}


def predictions(rows: ray.data.Dataset, model: nn.Module, *, model_config: dict, preprocessing: dict, actors: int,
                use_gpu: bool, keep: tuple[str, ...]) -> ray.data.Dataset:
    """`rows` (features[, categories] and the `keep` columns) mapped to the task's predictions plus
    the `keep` columns, lazily. The order is the input's when the DataContext preserves order."""
    weights = ray.put({name: tensor.detach().cpu() for name, tensor in model.state_dict().items()})
    return rows.map_batches(
        ModelOnBatches, batch_size=BATCH_ROWS, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        num_gpus=1 if use_gpu else 0,
        fn_constructor_kwargs={"model": model_config, "preprocessing": preprocessing, "weights": [weights],
                               "keep": keep})


def prediction_columns(predicted: dict[str, np.ndarray], preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """The predictions as people read them: the class as the data names it and each class's
    probability (`probability:<class>`), the target in its own units, or a block's loss."""
    if preprocessing.task == "classification":
        names = class_names(preprocessing)
        return {"prediction": names[predicted["prediction"]],
                **{f"probability:{name}": predicted["probabilities"][:, i] for i, name in enumerate(names)}}
    if preprocessing.task == "regression":
        return {"prediction": predicted["prediction"]}
    return {"loss": predicted["loss"]}


def class_names(preprocessing: Preprocessing) -> np.ndarray:
    """Class index -> the class as the data names it (text), by indexing."""
    return np.asarray([str(name) for name in preprocessing.classes], dtype=object)
