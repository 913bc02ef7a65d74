"""Shared fixtures: devices and dtypes to parametrize over, RNG isolation, CUDA skipping."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.needs_cuda),
]
DTYPES = [torch.float32, torch.float64]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_rng():
    """Every test starts from the same seed and leaves the global RNG as it found it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def cpp_kernels(monkeypatch) -> None:
    """The C++ CPU kernels (``torch.ops.plasticity_plugins_cpu``), which must build wherever there
    is a C++ compiler: skips without one; a build failure (a warning and a fallback to the torch
    ops) fails the test."""
    monkeypatch.delenv("PLASTICITY_PLUGINS_CPU_EXT", raising=False)
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the C++ kernels cannot be built")
    from plasticity_plugins.kernels._extension_build import cpu_ops_available

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_ops_available()
