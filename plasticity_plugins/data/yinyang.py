"""The Yin-Yang data set (Kriener, Göltz, Petrovici; arXiv 2102.08211), generated offline.

A 2-D three-class problem (yin, yang and the two dots) that a linear classifier cannot solve but
a small network can, used by Fast & Deep (Göltz, Kriener et al., Nat. Mach. Intell. 2021). Each
sample is ``(x, y, 1 - x, 1 - y)`` for a point ``(x, y)`` of the unit disc centred on
``(0.5, 0.5)`` (the mirrored coordinates make every input carry the same information, which
matters for spike-time coding, where a small value means an early spike).

The generator follows the published one draw for draw, so the published splits (train 5000 seed
42, validation 1000 seed 41, test 1000 seed 40) are reproduced bit for bit:

* one ``numpy.random.RandomState(seed)`` for the whole set;
* per sample, first the goal class ``c = randint(3)`` (balanced classes on average), then
  rejection sampling: draw ``(x, y) = rand(2) * 2 r_big`` until the point lies within ``r_big`` of
  ``(r_big, r_big)`` and its class is ``c``.

Class of a point, with ``d_r = |p - (1.5 r_big, r_big)|`` and ``d_l = |p - (0.5 r_big, r_big)|``:
``2`` (dot) if ``d_r < r_small`` or ``d_l < r_small``; else ``1`` if ``d_r <= r_small`` or
``r_small < d_l <= r_big / 2`` or (``y > r_big`` and ``d_r > r_big / 2``); else ``0``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["CLASS_NAMES", "YINYANG_SPLITS", "load_yinyang", "make_yinyang", "yinyang_class"]

CLASS_NAMES = ("yin", "yang", "dot")
"""Names of the labels 0, 1 and 2, as in the published data set."""

YINYANG_SPLITS: dict[str, tuple[int, int]] = {
    "train": (5000, 42),
    "validation": (1000, 41),
    "test": (1000, 40),
}
"""The published splits: name -> (size, seed)."""


def yinyang_class(x: float, y: float, r_small: float = 0.1, r_big: float = 0.5) -> int:
    """Label of the point ``(x, y)``: 0 (yin), 1 (yang) or 2 (dot); see the module docstring.

    Example:
        >>> yinyang_class(0.75, 0.5), yinyang_class(0.5, 0.9), yinyang_class(0.5, 0.1)
        (2, 1, 0)
    """
    d_right = math.hypot(x - 1.5 * r_big, y - r_big)
    d_left = math.hypot(x - 0.5 * r_big, y - r_big)
    if d_right < r_small or d_left < r_small:
        return 2
    is_one = (
        d_right <= r_small
        or r_small < d_left <= 0.5 * r_big
        or (y > r_big and d_right > 0.5 * r_big)
    )
    return int(is_one)


def make_yinyang(
    size: int, seed: int, r_small: float = 0.1, r_big: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``size`` Yin-Yang samples with ``numpy.random.RandomState(seed)``.

    Draw order per sample (it decides the values): ``c = randint(3)``, then pairs
    ``rand(2) * 2 r_big`` until a pair lies in the disc of radius ``r_big`` around
    ``(r_big, r_big)`` (distance ``<= r_big``) and has class ``c``.

    Args:
        size: number of samples (``>= 0``).
        seed: seed of the ``RandomState``.
        r_small: radius of the two dots.
        r_big: radius of the whole disc (``0.5``: the unit square).

    Returns:
        ``(samples, labels)``: ``[size, 4]`` float64 rows ``(x, y, 1 - x, 1 - y)`` and ``[size]``
        int64 labels in ``{0, 1, 2}``.

    Raises:
        ValueError: ``size`` is negative, or the radii are not ``0 < r_small < r_big / 2``.

    Example:
        >>> samples, labels = make_yinyang(3, seed=40)
        >>> samples.shape, labels.tolist()
        ((3, 4), [2, 2, 1])
        >>> bool(np.allclose(samples[:, :2] + samples[:, 2:], 2 * 0.5))
        True
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if not 0.0 < r_small < 0.5 * r_big:
        raise ValueError(f"need 0 < r_small < r_big / 2, got r_small={r_small}, r_big={r_big}")
    rng = np.random.RandomState(seed)
    samples = np.empty((size, 4), dtype=np.float64)
    labels = np.empty(size, dtype=np.int64)
    for n in range(size):
        goal = int(rng.randint(3))
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if math.hypot(x - r_big, y - r_big) > r_big:
                continue
            if yinyang_class(x, y, r_small, r_big) == goal:
                break
        samples[n] = (x, y, 1.0 - x, 1.0 - y)
        labels[n] = goal
    return samples, labels


def load_yinyang(split: str = "train", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """One published split as tensors: samples ``[N, 4]`` of ``dtype`` and int64 labels ``[N]``.

    Generated on the fly (well under a second for the 5000 training samples); identical to the
    released arrays (bit for bit with ``dtype=torch.float64``).

    Args:
        split: ``"train"`` (5000, seed 42), ``"validation"`` (1000, seed 41) or ``"test"``
            (1000, seed 40).
        dtype: floating dtype of the samples.

    Raises:
        ValueError: unknown split.

    Example:
        >>> x, y = load_yinyang("test", dtype=torch.float64)
        >>> tuple(x.shape), torch.bincount(y).tolist()
        ((1000, 4), [350, 316, 334])
    """
    if split not in YINYANG_SPLITS:
        raise ValueError(f"split must be one of {sorted(YINYANG_SPLITS)}, got {split!r}")
    size, seed = YINYANG_SPLITS[split]
    samples, labels = make_yinyang(size, seed)
    return torch.from_numpy(samples).to(dtype), torch.from_numpy(labels)
