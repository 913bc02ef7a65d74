"""scikit-learn's 8x8 handwritten digits (1797 images, UCI optdigits), split offline.

The images ship with scikit-learn, so nothing is downloaded. Pixel values ``0..16`` are divided
by 16 to lie in [0, 1]; the train / test split is stratified (``train_test_split(...,
stratify=labels, random_state=seed)``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import require_framework
from .splits import check_size

__all__ = ["DIGITS_SIZE", "DIGITS_TEST_SIZE", "split_digits"]

DIGITS_SIZE = 1797
"""Number of images in scikit-learn's digits."""

DIGITS_TEST_SIZE = 360
"""Default size of the test part (about 20 %); the training part defaults to the other 1437."""


def split_digits(
    train_size: int | None = None, test_size: int | None = None, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)``: ``[N, 64]`` float32 in [0, 1] and int64 labels.

    Args:
        train_size: training images (``None``: all that the test part leaves, 1437 by default).
        test_size: test images (``None``: 360).
        seed: ``random_state`` of the stratified split.

    Raises:
        ValueError: sizes that are not positive or add up to more than 1797.
        MissingFrameworkError: scikit-learn is not installed
            (``pip install 'plasticity-plugins[data]'``).

    Example:
        >>> x_train, y_train, x_test, y_test = split_digits(seed=0)
        >>> tuple(x_train.shape), tuple(x_test.shape), float(x_train.max())
        ((1437, 64), (360, 64), 1.0)
    """
    n_test = check_size("digits", "test", test_size, DIGITS_TEST_SIZE, DIGITS_SIZE - 1)
    n_train = check_size("digits", "train", train_size, DIGITS_SIZE - n_test, DIGITS_SIZE - n_test)
    datasets = require_framework("sklearn.datasets", extra="data")
    model_selection = require_framework("sklearn.model_selection", extra="data")
    images, labels = datasets.load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        images, labels, train_size=n_train, test_size=n_test, stratify=labels, random_state=seed
    )

    def as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(x / 16.0).float(), torch.from_numpy(y.astype(np.int64))

    return (*as_tensors(x_train, y_train), *as_tensors(x_test, y_test))
