"""`data.image`: how pictures become model inputs (size, channels) and how training pictures are
randomly altered. Augmentation touches the train split only: validation and test see every picture
exactly as evaluation, export and prediction will.
"""

from typing import Literal

from pydantic import Field, PositiveInt

from rayspeed.config.section import Section

Probability = Field(0.0, ge=0, le=1)


class Flip(Section):
    """Mirror the picture left to right."""

    probability: float = Probability
    """Chance that a training picture is mirrored."""


class Rotation(Section):
    """Rotate the picture about its centre by a uniform random angle; corners are filled with black."""

    probability: float = Probability
    """Chance that a training picture is rotated."""
    degrees: float = Field(15.0, gt=0, le=180)
    """The largest angle, either way."""


class Crop(Section):
    """Pad every side with black, then cut a window of the original size at a random place."""

    probability: float = Probability
    """Chance that a training picture is shifted this way."""
    padding: PositiveInt = 2
    """Pixels of padding on each side: the largest shift."""


class Noise(Section):
    """Add Gaussian noise to the normalized pixels."""

    probability: float = Probability
    """Chance that a training picture gets noise."""
    std: float = Field(0.1, gt=0)
    """Standard deviation of the noise, in units of the normalized pixels."""


class Augmentation(Section):
    """Random changes to training pictures, each applied on its own with its probability."""

    flip: Flip = Flip()
    """Mirror left to right: `probability`."""
    rotation: Rotation = Rotation()
    """Turn by up to `degrees` either way: `probability`, `degrees`."""
    crop: Crop = Crop()
    """Shift by up to `padding` pixels each way: `probability`, `padding`."""
    noise: Noise = Noise()
    """Gaussian noise on the standardized pixels: `probability`, `std`."""

    @property
    def enabled(self) -> bool:
        return any(part.probability > 0 for part in (self.flip, self.rotation, self.crop, self.noise))


class ImageConfig(Section):
    """Pictures: every one is resized to `size` and read as `channels` channels, then normalized by
    the train split's mean and standard deviation per channel."""

    size: tuple[PositiveInt, PositiveInt] | None = None
    """[height, width] every picture is resized to; default: the size of the first picture read."""
    channels: Literal[1, 3] | None = None
    """1 (grayscale) or 3 (RGB); default: those of the first picture read (RGBA reads as RGB)."""
    augment: Augmentation = Augmentation()
    """Training-only random changes, applied as the train split streams to the workers."""
