"""Shared code of the STDP-family examples (``diehl_cook_mnist.py``, ``mozafari_rstdp_mnist.py``).

Data loading and mini-batching come from :mod:`_common` (the offline MNIST subset, once for all
examples); this module adds what only the unsupervised / reward-modulated examples need:

* :func:`progress`: a tqdm bar that can be switched off (``--no-progress``);
* :func:`save_image_grid`: a PNG of a grid of small images (receptive fields, feature maps);
* :func:`accuracy`: percent correct; :func:`seeded`: a seeded CPU generator.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import batches, load_data

__all__ = ["accuracy", "batches", "load_data", "progress", "save_image_grid", "seeded"]

T = TypeVar("T")


def progress(
    items: Iterable[T], enabled: bool = True, total: int | None = None, desc: str = ""
) -> Iterator[T]:
    """``items`` wrapped in a tqdm progress bar (written to stderr) when ``enabled``."""
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True)


def accuracy(predictions: Tensor, labels: Tensor) -> float:
    """Percentage of ``predictions`` equal to ``labels``."""
    return 100.0 * float((predictions.cpu() == labels.cpu()).double().mean())


def save_image_grid(
    images: Tensor,
    path: str | Path,
    title: str = "",
    columns: int | None = None,
    cmap: str = "hot_r",
    labels: Sequence[str] | None = None,
    symmetric: bool = False,
) -> Path:
    """Save ``[N, H, W]`` images as one PNG grid (each image scaled on its own).

    Args:
        images: the images.
        path: output file.
        title: figure title.
        columns: images per row (default: about ``sqrt(N)``).
        cmap: matplotlib colour map.
        labels: optional caption per image.
        symmetric: scale each image to ``[-m, m]`` (signed data, e.g. ON minus OFF weights).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = images.detach().cpu().float()
    n = images.shape[0]
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 0.9 + 0.4))
    flat = axes.ravel() if hasattr(axes, "ravel") else [axes]
    for i, ax in enumerate(flat):
        ax.set_axis_off()
        if i >= n:
            continue
        image = images[i]
        if symmetric:
            m = float(image.abs().max()) or 1.0
            ax.imshow(image, cmap=cmap, vmin=-m, vmax=m, interpolation="nearest")
        else:
            ax.imshow(image, cmap=cmap, interpolation="nearest")
        if labels is not None:
            ax.set_title(labels[i], fontsize=6, pad=1)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, 0.96 if title else 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)
