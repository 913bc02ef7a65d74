"""Checking requested split sizes and drawing seeded subsets, shared by every loader."""

from __future__ import annotations

import numpy as np

__all__ = ["check_size", "seeded_subset"]


def check_size(name: str, part: str, size: int | None, default: int, available: int) -> int:
    """The number of samples to take: ``size`` (or ``default`` when ``None``), checked.

    Args:
        name: the data set's name, for the message.
        part: ``"train"`` or ``"test"``, for the message.
        size: the requested size, or ``None``.
        default: the size used when ``size`` is ``None``.
        available: how many samples there are.

    Raises:
        ValueError: a size that is not a positive int or exceeds ``available``.

    Example:
        >>> check_size("digits", "train", None, 1437, 1437)
        1437
        >>> check_size("digits", "train", 2000, 1437, 1437)
        Traceback (most recent call last):
        ...
        ValueError: digits: train_size=2000 is more than the 1437 training samples available
    """
    if size is None:
        size = default
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{name}: {part}_size must be a positive int, got {size!r}")
    if size > available:
        noun = "training" if part == "train" else "test"
        raise ValueError(
            f"{name}: {part}_size={size} is more than the {available} {noun} samples available"
        )
    return int(size)


def seeded_subset(total: int, size: int, seed: int) -> np.ndarray:
    """``size`` distinct indices of ``range(total)`` in a seeded random order.

    Example:
        >>> seeded_subset(10, 3, seed=0).tolist()
        [4, 6, 2]
    """
    return np.random.default_rng(seed).permutation(total)[:size]
