"""Penalty terms added to the training loss (weight decay is the optimizer's)."""

import torch
from torch import nn


def penalized_weights(module: nn.Module) -> list[nn.Parameter]:
    """Weight matrices, conv kernels and embeddings: parameters of two or more dimensions (biases and
    norm scales are left alone, as weight decay conventionally leaves them); tied weights once."""
    return [parameter for parameter in module.parameters() if parameter.requires_grad and parameter.dim() >= 2]


def training_objective(loss: torch.Tensor, *, l1: float, weights: list[nn.Parameter]) -> torch.Tensor:
    """What is minimized: the task's loss plus, with `l1`, l1 x sum |w| over `weights`."""
    return loss + l1 * l1_penalty(weights) if l1 else loss


def l1_penalty(weights: list[nn.Parameter]) -> torch.Tensor:
    """sum |w| over `weights`, in fp32 whatever the training precision."""
    return torch.stack([weight.abs().sum(dtype=torch.float32) for weight in weights]).sum()
