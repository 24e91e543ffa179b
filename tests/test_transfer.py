"""`model.init_from` and `model.freeze` on real modules, without Ray: what is copied, what starts fresh
(a head for another number of classes), what is frozen, and the refusals."""

import pytest
import torch
from torch import nn

from rayspeed.errors import ConfigError
from rayspeed.trainers.transfer import adopt


def mlp(classes: int, features: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.BatchNorm1d(16), nn.Linear(16, classes))


def test_matching_tensors_are_copied_and_a_head_of_another_shape_starts_fresh():
    torch.manual_seed(0)
    source = mlp(10)
    weights = {name: tensor.clone() for name, tensor in source.state_dict().items()}
    target = mlp(3)
    fresh_head = target[3].weight.clone()
    adoption = adopt(target, weights, freeze=["0."])
    assert sorted(adoption.fresh) == ["3.bias", "3.weight"]
    assert torch.equal(target[0].weight, source[0].weight) and torch.equal(target[2].running_mean,
                                                                            source[2].running_mean)
    assert torch.equal(target[3].weight, fresh_head)
    assert adoption.frozen == ["0.bias", "0.weight"]
    assert not target[0].weight.requires_grad and target[3].weight.requires_grad
    assert "3.weight" in adoption.describe("/x") and "frozen: 0.bias, 0.weight" in adoption.describe("/x")


def test_tied_weights_load_under_either_name():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(5, 4)
            self.head = nn.Linear(4, 5, bias=False)
            self.head.weight = self.embedding.weight

    source, target = Tied(), Tied()
    adoption = adopt(target, {"head.weight": source.head.weight.detach().clone()}, freeze=[])  # as safetensors saved it
    assert adoption.fresh == [] and torch.equal(target.embedding.weight, source.embedding.weight)


def test_refusals_name_the_problem():
    weights = mlp(10).state_dict()
    with pytest.raises(ConfigError, match="model.freeze: 'encoder.' names no parameter"):
        adopt(mlp(10), weights, freeze=["encoder."])
    with pytest.raises(ConfigError, match="model.freeze: '3.' names 3.weight, 3.bias, which init_from does not"):
        adopt(mlp(3), weights, freeze=["3."])
    with pytest.raises(ConfigError, match="none of its tensors fits this model"):
        adopt(nn.Linear(2, 2), {"other": torch.zeros(3)}, freeze=[])


def test_an_incomplete_export_is_named(tmp_path):
    from rayspeed.config.model import MlpModel
    from rayspeed.trainers.transfer import read_initial_weights

    with pytest.raises(ConfigError, match="model.init_from: no such directory"):
        read_initial_weights(MlpModel(init_from=str(tmp_path / "nowhere")))
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"is not a complete rayspeed export: model.safetensors, preprocessing.json "
                                          "missing"):
        read_initial_weights(MlpModel(init_from=str(tmp_path)))
