"""Yin-Yang generator (SPECS.md §3): the published splits bit for bit, class balance, ranges."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import torch

import plasticity_plugins.data.yinyang as yy
from plasticity_plugins.data.yinyang import (
    YINYANG_SPLITS,
    load_yinyang,
    make_yinyang,
    yinyang_class,
)

SHIPPED = Path(__file__).resolve().parents[2] / "shared" / "data" / "yinyang"


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: make_yinyang(size, seed) for name, (size, seed) in YINYANG_SPLITS.items()}


@pytest.mark.parametrize("name", ["train", "validation", "test"])
def test_reproduces_published_arrays_exactly(splits, name):
    if not (SHIPPED / f"{name}_samples.npy").is_file():
        pytest.skip(f"published Yin-Yang arrays not found in {SHIPPED}")
    samples, labels = splits[name]
    ref_samples = np.load(SHIPPED / f"{name}_samples.npy")
    ref_labels = np.load(SHIPPED / f"{name}_labels.npy")
    assert samples.dtype == ref_samples.dtype == np.float64
    assert samples.shape == ref_samples.shape == (YINYANG_SPLITS[name][0], 4)
    np.testing.assert_array_equal(samples, ref_samples)
    np.testing.assert_array_equal(labels, ref_labels)


def test_published_sizes_and_seeds():
    assert YINYANG_SPLITS == {"train": (5000, 42), "validation": (1000, 41), "test": (1000, 40)}


@pytest.mark.parametrize("name", ["train", "validation", "test"])
def test_values_labels_and_balance(splits, name):
    samples, labels = splits[name]
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    np.testing.assert_array_equal(samples[:, 2:], 1.0 - samples[:, :2])
    # every point inside the disc, and its label is the class of its coordinates
    assert np.all(np.hypot(samples[:, 0] - 0.5, samples[:, 1] - 0.5) <= 0.5)
    assert all(yinyang_class(x, y) == c for (x, y), c in zip(samples[:, :2], labels, strict=True))
    counts = np.bincount(labels, minlength=3)
    assert counts.shape == (3,)
    # goal classes are randint(3): balanced within a few standard deviations
    expected = len(labels) / 3
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected)), counts


def test_class_geometry():
    assert yinyang_class(0.75, 0.5) == 2 and yinyang_class(0.25, 0.5) == 2  # dot centres
    assert yinyang_class(0.5, 0.95) == 1 and yinyang_class(0.5, 0.05) == 0
    assert yinyang_class(0.25 + 0.15, 0.5) == 1  # ring around the left dot
    assert yinyang_class(0.75 + 0.15, 0.5) == 0  # ring around the right dot


def test_load_yinyang_tensors(splits):
    x, y = load_yinyang("validation", dtype=torch.float64)
    assert x.dtype == torch.float64 and y.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy(), splits["validation"][0])
    np.testing.assert_array_equal(y.numpy(), splits["validation"][1])
    assert load_yinyang("test")[0].dtype == torch.float32


def test_deterministic_and_seed_dependent():
    a, la = make_yinyang(50, seed=7)
    b, lb = make_yinyang(50, seed=7)
    c, _ = make_yinyang(50, seed=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert make_yinyang(0, seed=1)[0].shape == (0, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_yinyang("valid")
    with pytest.raises(ValueError, match="size"):
        make_yinyang(-1, seed=0)
    with pytest.raises(ValueError, match="r_small"):
        make_yinyang(10, seed=0, r_small=0.3)


def test_doctests():
    assert doctest.testmod(yy, raise_on_error=False).failed == 0
