"""The build helper of the compiled kernels: a failed build warns once and is not retried, and
the environment switches skip the build."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

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


@pytest.mark.parametrize("value", [None, "", "0", " Off ", "1", "yes", "caf\u00e9"])
def test_the_switches_read_the_environment_as_os_environ_does(monkeypatch, value):
    """The fast read of the switches (no KeyError for an unset name) sees what os.environ sees,
    also after a change in the same process."""
    name = "PLASTICITY_PLUGINS_CPU_EXT"
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)
    assert _extension_build._environment_value(name) == os.environ.get(name) == value
    expected = value is None or value.strip().lower() not in ("0", "false", "no", "off")
    assert _extension_build.cpu_ext_enabled() is expected
    library = (_extension_build.CPU_LIBRARY, _extension_build.CPU_SOURCES)
    assert _extension_build.cpu_ops_available() is _extension_build.load_cpu_ops(*library)
    assert expected or not _extension_build.cpu_ops_available()


def test_a_first_build_says_why_the_caller_waits(monkeypatch, tmp_path, capsys):
    """A library torch's extension cache does not hold yet is announced on stderr before the
    (up to a minute) build; one the cache holds is loaded without a word."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    built = []

    def build(name: str, sources: list[str], **kwargs: object) -> str:
        library = _extension_build.cpu_library_name(name)
        directory = tmp_path / library
        directory.mkdir(exist_ok=True)
        (directory / f"{library}.so").touch()
        built.append(name)
        return str(directory / f"{library}.so")

    monkeypatch.setattr(_extension_build, "build_cpu_library", build)
    load = _extension_build._build_and_load  # without the per-process memo
    assert load("plasticity_plugins_test_notice", ("k_winners.cpp",), "CPU")
    assert "compiling the CPU kernels" in capsys.readouterr().err
    assert load("plasticity_plugins_test_notice", ("k_winners.cpp",), "CPU")
    assert capsys.readouterr().err == "" and len(built) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenMP build on Linux only")
def test_the_cpu_library_runs_its_loops_on_torchs_threads(cpp_kernels):
    """``at::parallel_for`` in the CPU kernels is an OpenMP parallel region only when the library
    is compiled with OpenMP (else a serial loop, which no result would reveal): the loaded
    library calls libgomp's ``GOMP_parallel``."""
    library = _extension_build.cpu_library_name(_extension_build.CPU_LIBRARY)
    with open("/proc/self/maps") as maps:
        mapped = {Path(line.split()[-1]) for line in maps if library in line}
    paths = {p for p in mapped if p.name.startswith(library) and p.suffix == ".so"}
    assert len(paths) == 1, mapped  # torch names a rebuild in the same process NAME_v1.so
    assert b"GOMP_parallel" in Path(paths.pop()).read_bytes()
