"""Build the C++ / CUDA sources of ``plasticity_plugins.cuda`` on first use.

Every compiled kernel in ``cuda/`` is built with :func:`torch.utils.cpp_extension.load` the first
time an op needs it (a CUDA kernel on a CUDA device, a CPU kernel on a CPU tensor), and loaded as a
plain shared library whose C++ code registers its ops with the PyTorch dispatcher
(``TORCH_LIBRARY``; no pybind11 module, which keeps the build short). torch caches the build in its
extensions folder, so only the first process pays it. Callers decide at call time:
:func:`load_cuda_ops` and :func:`load_cpu_ops` return ``False`` when the build fails (no nvcc, no
compiler, a broken toolkit), warn once per library, and never retry, so the op falls back to its
pure-torch implementation for the rest of the process.

Environment:
    ``PLASTICITY_PLUGINS_CUDA_EXT=0`` disables the compiled CUDA ops (read at every call).
    ``PLASTICITY_PLUGINS_CPU_EXT=0`` disables the compiled CPU ops (read at every call).
    ``TORCH_CUDA_ARCH_LIST`` chooses the GPU architectures, as for any torch extension; unset, the
    architectures of the visible GPUs are used.
    ``CUDA_HOME`` names the CUDA toolkit; unset, torch's detection is used, and if that points at
    a folder without ``include/cuda_runtime.h`` (a ``/usr/local/bin/nvcc`` wrapper script, say)
    ``/usr/local/cuda`` is tried.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import shutil
import sys
import threading
import types
import warnings
from pathlib import Path

import torch

__all__ = [
    "build_cpu_library",
    "build_cuda_library",
    "cpu_ext_enabled",
    "cpu_library_name",
    "cpu_ops_accept",
    "cpu_ops_available",
    "cuda_ext_enabled",
    "cuda_source",
    "load_cpu_ops",
    "load_cuda_ops",
    "nvcc_path",
]

_LOCK = threading.Lock()


def _flag_set(variable: str) -> bool:
    value = _environment_value(variable)  # read at every call of an op (tests switch it)
    return value is None or value.strip().lower() not in ("0", "false", "no", "off")


def _environment_value(variable: str) -> str | None:
    """``os.environ.get(variable)``, without the KeyError that ``os.environ`` raises and catches
    for an unset name (~1 us; these flags are read at every step, and are usually unset)."""
    data = getattr(os.environ, "_data", None)  # CPython's os._Environ: {encoded: encoded}
    if not isinstance(data, dict):
        return os.environ.get(variable)
    key = _ENCODED_NAMES.get(variable)
    if key is None:
        key = _ENCODED_NAMES[variable] = os.environ.encodekey(variable)
    value = data.get(key)
    return None if value is None else str(os.environ.decodevalue(value))


_ENCODED_NAMES: dict[str, object] = {}


def cuda_ext_enabled() -> bool:
    """Whether compiled CUDA ops may be used (``PLASTICITY_PLUGINS_CUDA_EXT`` is not ``0``)."""
    return _flag_set("PLASTICITY_PLUGINS_CUDA_EXT")


def cpu_ext_enabled() -> bool:
    """Whether compiled CPU ops may be used (``PLASTICITY_PLUGINS_CPU_EXT`` is not ``0``)."""
    return _flag_set("PLASTICITY_PLUGINS_CPU_EXT")


def cuda_source(name: str) -> Path:
    """Path of a file shipped in ``plasticity_plugins.cuda`` (e.g. ``"lambertw.cu"``).

    Raises:
        FileNotFoundError: the file is not part of the installed package.
    """
    path = Path(str(importlib.resources.files("plasticity_plugins.cuda").joinpath(name)))
    if not path.is_file():
        raise FileNotFoundError(f"source {name!r} not found in plasticity_plugins.cuda")
    return path


def _fix_cuda_home() -> str | None:
    """Make torch's ``CUDA_HOME`` point at a toolkit with headers, if one can be found."""
    from torch.utils import cpp_extension

    def has_headers(home: str | None) -> bool:
        return bool(home) and Path(str(home), "include", "cuda_runtime.h").is_file()

    home = cpp_extension.CUDA_HOME
    if has_headers(home):
        return home
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    for candidate in candidates:
        if has_headers(candidate):
            cpp_extension.CUDA_HOME = candidate  # torch reads this module global when building
            return candidate
    return home


def nvcc_path() -> str | None:
    """The nvcc that a build would use, or ``None`` when there is none."""
    home = _fix_cuda_home()
    if home:
        candidate = Path(home, "bin", "nvcc")
        if candidate.is_file():
            return str(candidate)
    return shutil.which("nvcc")


def build_cuda_library(
    name: str,
    sources: list[str],
    *,
    build_directory: str | None = None,
    verbose: bool = False,
) -> str:
    """Compile and link CUDA/C++ sources of ``plasticity_plugins.cuda`` into a shared library.

    The library is loaded into the process (its ``TORCH_LIBRARY`` blocks register their ops).
    Compiling needs nvcc and a host compiler, not a GPU. Errors propagate.

    Args:
        name: the library name (also the cache folder name under the torch extensions folder).
        sources: file names in ``plasticity_plugins.cuda``.
        build_directory: where to build (default: torch's extensions cache).
        verbose: print the compiler commands.

    Returns:
        The path of the loaded shared library.
    """
    _fix_cuda_home()
    return _build(name, sources, True, ["-O3"], build_directory, verbose)


# Vector instructions for the compiled CPU kernels, by torch's own check of this CPU (so a build
# never uses an instruction the CPU lacks); each level is built under its own library name.
_CPU_FLAGS = {
    "AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl"],
    "AVX2": ["-mavx2", "-mfma"],
}


def _cpu_capability() -> str:
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())
    return capability if capability in _CPU_FLAGS and sys.platform != "win32" else "DEFAULT"


def cpu_library_name(name: str) -> str:
    """The library name of a CPU kernel built for this CPU's vector instructions."""
    return f"{name}_{_cpu_capability().lower()}"


def build_cpu_library(
    name: str,
    sources: list[str],
    *,
    build_directory: str | None = None,
    verbose: bool = False,
) -> str:
    """Compile and link C++ sources of ``plasticity_plugins.cuda`` into a CPU shared library.

    Built with ``-O3 -fopenmp-simd`` (and ``-fopenmp`` on Linux, so that ``at::parallel_for`` uses
    torch's threads) plus the vector instructions torch detects on this CPU
    (AVX2 or AVX-512), under the name :func:`cpu_library_name` gives. Needs a C++ compiler only.
    Errors propagate.

    Args:
        name: the library's base name.
        sources: file names in ``plasticity_plugins.cuda``.
        build_directory: where to build (default: torch's extensions cache).
        verbose: print the compiler commands.

    Returns:
        The path of the loaded shared library.
    """
    flags = [] if sys.platform == "win32" else ["-O3", "-fopenmp-simd"]
    flags += _CPU_FLAGS.get(_cpu_capability(), [])
    # at::parallel_for runs on torch's OpenMP threads only in code compiled with OpenMP (else it
    # is a serial loop); the library then shares the libgomp torch has loaded
    threads = ["-fopenmp"] if sys.platform.startswith("linux") else []
    return _build(
        cpu_library_name(name), sources, False, flags + threads, build_directory, verbose, threads
    )


def _build(
    name: str,
    sources: list[str],
    with_cuda: bool,
    cflags: list[str],
    build_directory: str | None,
    verbose: bool,
    ldflags: list[str] | None = None,
) -> str:
    cpp_extension = _cpp_extension(quiet=not with_cuda)
    paths = [str(cuda_source(source)) for source in sources]
    include = str(cuda_source(sources[0]).parent)
    result = cpp_extension.load(
        name=name,
        sources=paths,
        extra_cflags=cflags,
        extra_cuda_cflags=["-O3"] if with_cuda else None,
        extra_ldflags=ldflags,
        extra_include_paths=[include],
        build_directory=build_directory,
        verbose=verbose,
        with_cuda=with_cuda,
        is_python_module=False,
    )
    return str(result)


def _cpp_extension(quiet: bool) -> types.ModuleType:
    """:mod:`torch.utils.cpp_extension`; ``quiet``: without the warning its first import logs
    on a machine with a CUDA toolkit but no GPU (irrelevant to a CPU build)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def _built_before(library: str) -> bool:
    """Whether torch's extension cache holds a build of ``library`` already (True when that
    cannot be told)."""
    try:
        directory = _cpp_extension(quiet=True)._get_build_directory(library, verbose=False)
    except Exception:  # a private torch helper: without it, no notice
        return True
    built = Path(directory).glob(f"{library}*")
    return any(path.suffix in (".so", ".pyd", ".dylib") for path in built)


def _build_and_load(name: str, sources: tuple[str, ...], device: str) -> bool:
    build = build_cuda_library if device == "CUDA" else build_cpu_library
    library = name if device == "CUDA" else cpu_library_name(name)
    if not _built_before(library):
        # the first build stalls the caller for up to a minute: say why
        print(
            f"plasticity_plugins: compiling the {device} kernels ({library}) on first use; "
            "torch caches the build (up to a minute, once)",
            file=sys.stderr,
            flush=True,
        )
    try:
        build(name, list(sources))
    except Exception as exc:  # any build/link/load failure means: use the torch fallback
        warnings.warn(
            f"plasticity_plugins: building the {device} library {name!r} failed "
            f"({type(exc).__name__}: {str(exc).strip()[-600:]}); "
            "falling back to the pure-torch implementation for this process. "
            f"Set PLASTICITY_PLUGINS_{device}_EXT=0 to skip the build attempt.",
            RuntimeWarning,
            stacklevel=5,
        )
        return False
    return True


def load_cuda_ops(name: str, sources: tuple[str, ...]) -> bool:
    """Build (once per process) and load a CUDA op library; ``False`` if unavailable.

    Returns ``False`` without building when ``PLASTICITY_PLUGINS_CUDA_EXT=0``. A failed build
    warns once and is not retried.
    """
    return _load(name, sources, "CUDA")


def load_cpu_ops(name: str, sources: tuple[str, ...]) -> bool:
    """Build (once per process) and load a CPU op library; ``False`` if unavailable.

    Returns ``False`` without building when ``PLASTICITY_PLUGINS_CPU_EXT=0``. A failed build
    warns once and is not retried.
    """
    return _load(name, sources, "CPU")


def _load(name: str, sources: tuple[str, ...], device: str) -> bool:
    enabled = cuda_ext_enabled if device == "CUDA" else cpu_ext_enabled
    if not enabled():
        return False
    key = (name, sources, device)
    loaded = _LOADED.get(key)  # read at every step of every rule: no lock once decided
    if loaded is None:
        with _LOCK:
            loaded = _LOADED.get(key)  # another thread may have built it meanwhile
            if loaded is None:
                loaded = _LOADED[key] = _build_and_load(name, sources, device)
    return loaded


#: The outcome of each library's build, once decided (the per-process memo of _load).
_LOADED: dict[tuple[str, tuple[str, ...], str], bool] = {}


# the CPU kernels, one library (each source registers its ops in plasticity_plugins_cpu)
CPU_LIBRARY = "plasticity_plugins_cpu"
CPU_SOURCES = ("k_winners.cpp", "stdp_conv2d.cpp", "stdp_linear.cpp", "decolle.cpp")


def cpu_ops_available() -> bool:
    """Whether the ops of ``torch.ops.plasticity_plugins_cpu`` can be used: builds and loads the
    CPU library on the first call (see :func:`load_cpu_ops`)."""
    return load_cpu_ops(CPU_LIBRARY, CPU_SOURCES)


def cpu_ops_accept(*tensors: torch.Tensor) -> bool:
    """Whether the CPU ops can take ``tensors``: all on the CPU, all float32 or all float64, and
    the library available (:func:`cpu_ops_available`). Checked at every step: no generator."""
    dtype = tensors[0].dtype
    if dtype is not torch.float32 and dtype is not torch.float64:
        return False
    for tensor in tensors:
        if not tensor.is_cpu or tensor.dtype is not dtype:
            return False
    return cpu_ops_available()
