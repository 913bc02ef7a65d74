"""Event streams through tonic: structured event arrays to frames, tonic data sets from disk.

tonic keeps one recording as a numpy structured array with fields ``x, y, t, p`` (a 2-D sensor,
e.g. N-MNIST, DVS Gesture) or ``x, t, p`` (a 1-D sensor, e.g. SHD's 700 cochlea channels); its
``sensor_size`` is ``(W, H, P)`` (``(700, 1, 1)`` for SHD). :func:`events_to_frames` turns such
recordings into event-count frames with tonic's own ``tonic.transforms.ToFrame(sensor_size,
n_time_bins=...)``: each recording's time span (first to last event) is cut into ``n_time_bins``
equal bins and the events of each bin are counted per pixel and polarity. One tonic detail:
the bins are half-open, so the events at the very last time stamp of a recording fall outside
every bin and are not counted.

Frame shapes per step: ``(P, H, W)`` for 2-D sensors, ``(X,)`` for a 1-D sensor with one
polarity (SHD: ``(700,)``), ``(P, X)`` for a 1-D sensor with several.

:func:`load_tonic_dataset` reads N-MNIST, DVS Gesture and SHD from disk in tonic's layout
(``ROOT/NMNIST``, ``ROOT/DVSGesture``, ``ROOT/SHD``) and never downloads: the files are checked
first, and tonic's own download is switched off. :func:`from_tonic` builds a
:class:`~plasticity_plugins.data.dataset.SpikeDataset` from any tonic data set objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import Tensor

from ..errors import require_framework
from .dataset import SpikeDataset
from .splits import check_size, seeded_subset

__all__ = [
    "DEFAULT_TIME_BINS",
    "EVENT_DATASETS",
    "EventDatasetSpec",
    "events_to_frames",
    "frame_shape",
    "from_tonic",
    "load_tonic_dataset",
    "missing_event_files",
]

DEFAULT_TIME_BINS = 20
"""Frames per recording when ``n_time_bins`` is not given."""


@dataclass(frozen=True)
class EventDatasetSpec:
    """A tonic data set that :func:`load_tonic_dataset` reads from disk.

    Attributes:
        name: the registry name.
        tonic_class: the class in ``tonic.datasets`` (also its folder under the root).
        title: the data set's usual name.
        num_classes: number of classes.
        sensor_size: tonic's ``(W, H, P)``.
        train_files: what tonic checks before reading the training part (an archive, which
            tonic wants to find even after extraction, and the extracted folder or file),
            relative to ``ROOT/tonic_class``.
        test_files: the same for the test part.
    """

    name: str
    tonic_class: str
    title: str
    num_classes: int
    sensor_size: tuple[int, int, int]
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]


EVENT_DATASETS: dict[str, EventDatasetSpec] = {
    spec.name: spec
    for spec in (
        EventDatasetSpec(
            "nmnist", "NMNIST", "N-MNIST", 10, (34, 34, 2),
            ("train.zip", "Train"), ("test.zip", "Test"),
        ),
        EventDatasetSpec(
            "dvsgesture", "DVSGesture", "DVS Gesture", 11, (128, 128, 2),
            ("ibmGestureTrain.tar.gz", "ibmGestureTrain"),
            ("ibmGestureTest.tar.gz", "ibmGestureTest"),
        ),
        EventDatasetSpec(
            "shd", "SHD", "Spiking Heidelberg Digits", 20, (700, 1, 1),
            ("shd_train.h5.zip", "shd_train.h5"), ("shd_test.h5.zip", "shd_test.h5"),
        ),
    )
}  # fmt: skip
"""The event data sets known by name."""


def frame_shape(sensor_size: Sequence[int], two_dimensional: bool = True) -> tuple[int, ...]:
    """Shape of one frame of :func:`events_to_frames` for tonic's ``sensor_size`` ``(W, H, P)``.

    Example:
        >>> frame_shape((34, 34, 2)), frame_shape((700, 1, 1), two_dimensional=False)
        ((2, 34, 34), (700,))
    """
    width, height, polarities = (int(n) for n in sensor_size)
    if two_dimensional:
        return (polarities, height, width)
    return (width,) if polarities == 1 else (polarities, width)


def _check_time_bins(n_time_bins: int) -> None:
    if isinstance(n_time_bins, bool) or not isinstance(n_time_bins, int) or n_time_bins < 1:
        raise ValueError(f"n_time_bins must be a positive int, got {n_time_bins!r}")


def _check_events(events: np.ndarray) -> bool:
    names = events.dtype.names
    if names is None or not {"x", "t", "p"} <= set(names):
        raise ValueError(
            "events must be tonic structured arrays with fields (x, y, t, p) or (x, t, p), "
            f"got dtype {events.dtype}"
        )
    return "y" in names


def events_to_frames(
    events: Sequence[np.ndarray],
    sensor_size: Sequence[int],
    n_time_bins: int = DEFAULT_TIME_BINS,
    *,
    target_size: tuple[int, int] | None = None,
) -> Tensor:
    """Recordings in tonic's structured-array format to event-count frames, with tonic's ToFrame.

    Args:
        events: recordings, each a structured array with fields ``x, y, t, p`` or ``x, t, p``.
        sensor_size: tonic's ``(W, H, P)`` of the sensor (``(700, 1, 1)`` for a 1-D sensor).
        n_time_bins: frames per recording (``ToFrame(n_time_bins=...)``).
        target_size: ``(W', H')`` to shrink a 2-D sensor to first, with tonic's
            ``Downsample(sensor_size, target_size)`` (coordinates scaled and truncated).

    Returns:
        ``[N, n_time_bins, *frame_shape]`` float32 event counts (see :func:`frame_shape`).

    Raises:
        ValueError: not structured event arrays, mixed 1-D / 2-D recordings, ``n_time_bins < 1``,
            coordinates outside the sensor.
        MissingFrameworkError: tonic is not installed (``pip install 'plasticity-plugins[data]'``).

    Example:
        >>> dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
        >>> rec = np.array([(0, 0, 0, 0), (1, 2, 40, 1), (3, 3, 100, 1)], dtype=dtype)
        >>> frames = events_to_frames([rec], sensor_size=(4, 4, 2), n_time_bins=2)
        >>> frames.shape, frames[0, 0, 0, 0, 0].item(), frames[0, 0, 1, 2, 1].item()
        (torch.Size([1, 2, 2, 4, 4]), 1.0, 1.0)
    """
    _check_time_bins(n_time_bins)
    sensor = tuple(int(n) for n in sensor_size)
    if len(sensor) != 3 or min(sensor) < 1:
        raise ValueError(f"sensor_size must be tonic's (W, H, P) of positive ints, got {sensor}")
    recordings = list(events)
    if not recordings:
        raise ValueError("events_to_frames: no recordings given")
    kinds = {_check_events(np.asarray(rec)) for rec in recordings}
    if len(kinds) != 1:
        raise ValueError("events_to_frames: recordings mix 1-D (x, t, p) and 2-D (x, y, t, p)")
    two_dimensional = kinds.pop()
    transforms = require_framework("tonic.transforms", extra="data")
    downsample = None
    if target_size is not None:
        if not two_dimensional:
            raise ValueError("events_to_frames: target_size needs a 2-D sensor (x, y, t, p)")
        downsample = transforms.Downsample(sensor_size=sensor, target_size=tuple(target_size))
        sensor = (int(target_size[0]), int(target_size[1]), sensor[2])
    to_frame = transforms.ToFrame(sensor_size=sensor, n_time_bins=n_time_bins)
    out = torch.zeros(len(recordings), n_time_bins, *frame_shape(sensor, two_dimensional))
    for n, rec in enumerate(recordings):
        rec = np.array(rec, copy=True)  # ToFrame writes p = 0 in place for one polarity
        if downsample is not None:
            rec = downsample(rec)
        if len(rec) == 0:
            continue  # no events: all frames stay empty
        limits = [("x", sensor[0])] + ([("y", sensor[1])] if two_dimensional else [])
        for field, size in limits:
            if rec[field].min() < 0 or rec[field].max() >= size:
                raise ValueError(
                    f"events_to_frames: recording {n} has {field} in "
                    f"[{rec[field].min()}, {rec[field].max()}], outside the sensor (size {size})"
                )
        frames = torch.from_numpy(np.asarray(to_frame(rec), dtype=np.float32))
        out[n] = frames.reshape(out.shape[1:])
    return out


def _labels(values: Sequence[Any]) -> Tensor:
    return torch.tensor([int(np.asarray(v).item()) for v in values], dtype=torch.int64)


def _frames_of(
    dataset: Any,
    indices: np.ndarray,
    sensor_size: Sequence[int] | None,
    n_time_bins: int,
    target_size: tuple[int, int] | None,
) -> tuple[Tensor, Tensor]:
    samples = [dataset[int(i)] for i in indices]
    data = [sample[0] for sample in samples]
    labels = _labels([sample[1] for sample in samples])
    if all(getattr(np.asarray(d).dtype, "names", None) for d in data):
        if sensor_size is None:
            raise ValueError(
                f"from_tonic: {type(dataset).__name__} has no sensor_size; "
                "pass sensor_size=(W, H, P)"
            )
        return events_to_frames(data, sensor_size, n_time_bins, target_size=target_size), labels
    frames = [torch.as_tensor(np.asarray(d), dtype=torch.float32) for d in data]
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) != 1 or len(next(iter(shapes))) < 2:
        raise ValueError(
            "from_tonic: samples are neither structured event arrays nor frames of one shape "
            f"[T, ...] (got shapes {sorted(shapes)[:3]})"
        )
    return torch.stack(frames), labels


def from_tonic(
    train: Any,
    test: Any,
    *,
    name: str = "tonic",
    n_time_bins: int = DEFAULT_TIME_BINS,
    sensor_size: Sequence[int] | None = None,
    target_size: tuple[int, int] | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> SpikeDataset:
    """A :class:`SpikeDataset` of event frames from tonic data set objects (or any such sequence).

    ``train`` and ``test`` are indexable (``len`` and ``[i] -> (events, label)``), like every
    ``tonic.datasets`` object. Samples that are structured event arrays become frames with
    :func:`events_to_frames`; samples that are already frames ``[T, ...]`` (a data set built with
    ``transform=ToFrame(...)``) are used as they are. With a size smaller than a part, a seeded
    random subset is read (``seed`` for training, ``seed + 1`` for test); only those samples are
    read from disk.

    Args:
        train: the training data set.
        test: the test data set.
        name: the returned data set's name.
        n_time_bins: frames per recording.
        sensor_size: tonic's ``(W, H, P)``; default: ``train.sensor_size``.
        target_size: ``(W', H')`` to shrink a 2-D sensor to (see :func:`events_to_frames`).
        train_size: training samples (``None``: all).
        test_size: test samples (``None``: all).
        seed: seed of the subsets.
        num_classes: default: ``len(train.classes)`` if it has them, else the largest label + 1.

    Raises:
        ValueError: sizes that are not positive or exceed a part; samples of an unknown form.

    Example:
        >>> dtype = np.dtype([("t", int), ("x", int), ("p", int)])
        >>> rec = np.array([(0, 3, 1), (500, 9, 1), (900, 3, 1)], dtype=dtype)
        >>> train = [(rec, 0), (rec, 1)]
        >>> ds = from_tonic(train, train, sensor_size=(10, 1, 1), n_time_bins=4)
        >>> ds.x_train.shape, ds.input_shape, ds.to_spikes(ds.x_test).shape
        (torch.Size([2, 4, 10]), (10,), torch.Size([4, 2, 10]))
    """
    _check_time_bins(n_time_bins)  # before reading anything from disk
    if sensor_size is None:
        sensor_size = getattr(train, "sensor_size", None)
    parts = []
    for part, dataset, size, part_seed in (
        ("train", train, train_size, seed),
        ("test", test, test_size, seed + 1),
    ):
        n = check_size(name, part, size, len(dataset), len(dataset))
        indices = seeded_subset(len(dataset), n, part_seed)
        parts.append(_frames_of(dataset, indices, sensor_size, n_time_bins, target_size))
    (x_train, y_train), (x_test, y_test) = parts
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"{name}: train frames {list(x_train.shape[1:])} and test frames "
            f"{list(x_test.shape[1:])} differ"
        )
    if num_classes is None:
        classes = getattr(train, "classes", None)
        if classes is not None and len(classes) > 0:
            num_classes = len(classes)
        else:
            num_classes = int(max(y_train.max(), y_test.max())) + 1
    return SpikeDataset(
        name=name,
        kind="events",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        input_shape=tuple(x_train.shape[2:]),
        native_steps=int(x_train.shape[1]),
    )


def missing_event_files(spec: EventDatasetSpec, root: Path) -> list[Path]:
    """What tonic would look for under ``root`` for ``spec`` and does not find (cheap check).

    Example:
        >>> [p.name for p in missing_event_files(EVENT_DATASETS["shd"], Path("/nonexistent"))]
        ['shd_train.h5.zip', 'shd_train.h5', 'shd_test.h5.zip', 'shd_test.h5']
    """
    folder = Path(root).expanduser() / spec.tonic_class
    return [folder / f for f in (*spec.train_files, *spec.test_files) if not (folder / f).exists()]


def _refuse_download(self: Any) -> NoReturn:
    raise FileNotFoundError(
        f"tonic found {type(self).__name__} incomplete under {self.location_on_system} (missing "
        f"or not fully extracted: {self.filename} and its contents) and would download it; "
        f"plasticity_plugins never downloads. Fetch it with tonic on a machine with network "
        f"access and copy the folder, archives included"
    )


def load_tonic_dataset(
    name: str,
    root: Path,
    *,
    n_time_bins: int = DEFAULT_TIME_BINS,
    target_size: tuple[int, int] | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
) -> SpikeDataset:
    """N-MNIST, DVS Gesture or SHD (see :data:`EVENT_DATASETS`) from ``root`` as event frames.

    Reads ``tonic.datasets.<Class>(save_to=root, train=...)`` with tonic's download switched
    off, then :func:`from_tonic`. Frames are float32 ``[N, n_time_bins, *frame]``: memory is
    ``4 N n_time_bins prod(frame)`` bytes (the whole N-MNIST training set at 20 bins: 11 GB), so
    pass ``train_size`` / ``test_size`` or ``target_size`` for the large sets.

    Args:
        name: ``"nmnist"``, ``"dvsgesture"`` or ``"shd"``.
        root: the folder that holds tonic's ``NMNIST`` / ``DVSGesture`` / ``SHD`` folders.
        n_time_bins: frames per recording.
        target_size: ``(W', H')`` to shrink a 2-D sensor to (e.g. ``(32, 32)`` for DVS Gesture).
        train_size: training recordings (``None``: all).
        test_size: test recordings (``None``: all).
        seed: seed of the subsets.

    Raises:
        FileNotFoundError: the data set is not under ``root`` (the message says what is missing
            and how to get it).
        MissingFrameworkError: tonic (or h5py for SHD) is not installed.
    """
    spec = EVENT_DATASETS[name]
    _check_time_bins(n_time_bins)
    root = Path(root).expanduser()
    missing = missing_event_files(spec, root)
    if missing:
        raise FileNotFoundError(
            f"{name}: {spec.title} not found under {root / spec.tonic_class} (missing "
            f"{', '.join(p.name for p in missing)}). Nothing is downloaded here: on a machine "
            f'with network access run `python -c "import tonic; '
            f"[tonic.datasets.{spec.tonic_class}('{root}', train=t) for t in (True, False)]\"` "
            f"and copy the folder {root / spec.tonic_class}, archives included (tonic checks "
            f"them), or pass root=... / set PLASTICITY_PLUGINS_DATA to the folder that holds it"
        )
    datasets = require_framework("tonic.datasets", extra="data")
    base = getattr(datasets, spec.tonic_class)
    # Same class name (tonic's folder is save_to/<class name>), but download() raises.
    offline = type(spec.tonic_class, (base,), {"download": _refuse_download})
    train = offline(save_to=str(root), train=True)
    test = offline(save_to=str(root), train=False)
    return from_tonic(
        train,
        test,
        name=name,
        n_time_bins=n_time_bins,
        sensor_size=spec.sensor_size,
        target_size=target_size,
        train_size=train_size,
        test_size=test_size,
        seed=seed,
        num_classes=spec.num_classes,
    )
