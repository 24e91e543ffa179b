"""Training-only random changes to pictures, applied by Ray Data to the train split's model rows as
they stream to the workers (CPU work, off the training devices); val and test never pass here.

Each pass over the train split draws new changes: the generator is seeded from the operating
system, so augmented runs are not bit-for-bit repeatable (Ray Data does not tell a map which epoch
it serves).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from rayspeed.config.images import Augmentation


def augment_rows(batch: dict, *, shape: list[int], augment: Augmentation, black: list[float]) -> dict:
    """`features` (flat, standardized) of each row changed at random; other columns untouched.

    Args:
        shape: [channels, height, width] of one row's features.
        black: the standardized value of a black pixel per channel, which rotation and crop fill with.
    """
    generator = torch.Generator()
    generator.seed()
    pictures = torch.from_numpy(np.array(batch["features"], dtype=np.float32)).view(-1, *shape)
    offset = torch.tensor(black, dtype=torch.float32).view(1, -1, 1, 1)
    pictures = pictures - offset  # black is 0 now: what padding adds

    def chosen(probability: float) -> torch.Tensor:
        return torch.nonzero(torch.rand(len(pictures), generator=generator) < probability).flatten()

    if len(rows := chosen(augment.flip.probability)):
        pictures[rows] = pictures[rows].flip(-1)
    if len(rows := chosen(augment.rotation.probability)):
        pictures[rows] = _rotate(pictures[rows], augment.rotation.degrees, generator)
    if len(rows := chosen(augment.crop.probability)):
        pictures[rows] = _shift(pictures[rows], augment.crop.padding, generator)
    pictures = pictures + offset
    if len(rows := chosen(augment.noise.probability)):
        pictures[rows] += torch.randn(pictures[rows].shape, generator=generator) * augment.noise.std
    return {**batch, "features": pictures.reshape(len(pictures), -1).numpy()}


def _rotate(pictures: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Each picture turned about its centre by a uniform angle in [-degrees, degrees] (bilinear)."""
    angles = (torch.rand(len(pictures), generator=generator) * 2 - 1) * math.radians(degrees)
    cos, sin = angles.cos(), angles.sin()
    height, width = pictures.shape[-2:]
    # affine_grid works in coordinates scaled to [-1, 1] per axis: undo the aspect ratio around the turn.
    theta = torch.stack([torch.stack([cos, -sin * height / width, torch.zeros_like(cos)], dim=1),
                         torch.stack([sin * width / height, cos, torch.zeros_like(cos)], dim=1)], dim=1)
    grid = F.affine_grid(theta, list(pictures.shape), align_corners=False)
    return F.grid_sample(pictures, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _shift(pictures: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each picture padded by `padding` on every side and cut back to its size at a random offset."""
    height, width = pictures.shape[-2:]
    padded = F.pad(pictures, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (len(pictures), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, top:top + height, left:left + width] for i, (top, left) in enumerate(offsets)])
