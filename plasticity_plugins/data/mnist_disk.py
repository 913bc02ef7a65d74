"""Full MNIST read from disk with torchvision (``download=False``: never fetched from here).

torchvision's layout under a root folder ``ROOT``::

    ROOT/MNIST/raw/train-images-idx3-ubyte   train-labels-idx1-ubyte
    ROOT/MNIST/raw/t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

(what ``torchvision.datasets.MNIST(ROOT, download=True)`` leaves there, on a machine with
network access).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import MissingFrameworkError
from .splits import check_size, seeded_subset

__all__ = ["MNIST_FILES", "load_mnist_from_disk", "missing_mnist_files"]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The raw files torchvision reads, under ``ROOT/MNIST/raw``."""


def missing_mnist_files(root: Path) -> list[Path]:
    """The raw MNIST files that are absent under ``root`` (empty: the data set is there).

    Example:
        >>> [p.name for p in missing_mnist_files(Path("/nonexistent"))][:1]
        ['train-images-idx3-ubyte']
    """
    raw = Path(root) / "MNIST" / "raw"
    return [raw / name for name in MNIST_FILES if not (raw / name).is_file()]


def load_mnist_from_disk(
    root: Path, train_size: int | None = None, test_size: int | None = None, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of torchvision's MNIST under ``root``.

    Images are ``[N, 784]`` float32 in [0, 1]. With a size smaller than the split (60000 /
    10000), a seeded random subset (``seed`` for training, ``seed + 1`` for test) is taken.

    Args:
        root: the folder that holds ``MNIST/raw``.
        train_size: training images (``None``: all 60000).
        test_size: test images (``None``: all 10000).
        seed: seed of the subsets.

    Raises:
        FileNotFoundError: files missing (the message names them and how to get them).
        MissingFrameworkError: torchvision is not installed.
        ValueError: sizes that are not positive or exceed the split.
    """
    missing = missing_mnist_files(root)
    if missing:
        raise FileNotFoundError(
            f"mnist: MNIST not found under {Path(root).expanduser()} (missing "
            f"{', '.join(str(p) for p in missing)}). Nothing is downloaded here: on a machine "
            f'with network access run `python -c "import torchvision; '
            f"torchvision.datasets.MNIST('{root}', download=True)\"` and copy the folder "
            f"(or pass root=... / set PLASTICITY_PLUGINS_DATA to where MNIST/raw is); "
            f"'mnist-subset' needs no download"
        )
    try:
        from torchvision.datasets import MNIST
    except ImportError as exc:
        raise MissingFrameworkError(
            f"torchvision is not installed; install it with `pip install torchvision` ({exc})"
        ) from exc
    parts = []
    for train, size, part_seed in ((True, train_size, seed), (False, test_size, seed + 1)):
        dataset = MNIST(str(root), train=train, download=False)
        images, labels = dataset.data, dataset.targets
        part = "train" if train else "test"
        n = check_size("mnist", part, size, len(images), len(images))
        chosen = torch.from_numpy(seeded_subset(len(images), n, part_seed).astype(np.int64))
        parts.append(images[chosen].reshape(n, -1).float() / 255.0)
        parts.append(labels[chosen].long())
    return parts[0], parts[1], parts[2], parts[3]
