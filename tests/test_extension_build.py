"""The build helper of the compiled kernels: a failed build warns once and is not retried, and
the environment switches skip the build."""

from __future__ import annotations

import warnings

import pytest

from plasticity_plugins.kernels import _extension_build


@pytest.mark.parametrize(
    "device,builder,loader,sources",
    [
        ("CUDA", "build_cuda_library", "load_cuda_ops", ("lambertw.cu", "lambertw.cpp")),
        ("CPU", "build_cpu_library", "load_cpu_ops", ("k_winners.cpp",)),
    ],
)
def test_build_failure_warns_once_and_the_switch_skips_the_build(
    monkeypatch, device, builder, loader, sources
):
    calls = []

    def fail(name: str, sources: list[str], **kwargs: object) -> str:
        calls.append(name)
        raise RuntimeError("the compiler exploded")

    monkeypatch.setattr(_extension_build, builder, fail)
    monkeypatch.setenv(f"PLASTICITY_PLUGINS_{device}_EXT", "1")
    load = getattr(_extension_build, loader)
    broken = f"plasticity_plugins_test_broken_{device.lower()}"
    with pytest.warns(RuntimeWarning, match=f"{device} library .* falling back to the pure-torch"):
        assert load(broken, sources) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(broken, sources) is False
    assert calls == [broken]  # not retried
    monkeypatch.setenv(f"PLASTICITY_PLUGINS_{device}_EXT", "0")
    assert load(f"plasticity_plugins_test_other_{device.lower()}", sources) is False
    assert calls == [broken]
