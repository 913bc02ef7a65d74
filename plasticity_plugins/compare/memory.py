"""Peak memory and wall time of a block of code, on the CPU (resident memory) or a CUDA device.

On the CPU the figure is the peak resident set size (Linux ``VmHWM``) above the resident size
on entry. Two details make it follow the block's own allocations:

* glibc keeps freed blocks below a dynamic threshold (up to 32 MiB) in its heap, and a later
  block would reuse them without raising the resident size; :func:`use_exact_allocation` makes
  every tensor above 128 KiB a fresh mapping that is returned on free, and the meter trims the
  heap (``malloc_trim``) before it starts;
* the kernel's high-water mark is reset on entry (``/proc/self/clear_refs``); where that is not
  possible, ``ru_maxrss`` is used and :attr:`PeakMemory.exact` is False (a peak below an
  earlier one in this process then reads as 0).

On a CUDA device the figure is ``torch.cuda.max_memory_allocated`` above the allocation on
entry (the caching allocator's live tensors, not its reserved pool).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import resource
import time
from dataclasses import dataclass
from typing import Any

import torch

_LIBC: Any = None
with contextlib.suppress(OSError, TypeError):
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def use_exact_allocation() -> bool:
    """Make glibc return freed tensors to the OS, so resident memory follows live memory.

    With a fixed mmap threshold of 128 KiB every allocation larger than that is mapped on
    allocation and unmapped on free. Process-wide; returns False where glibc's ``mallopt`` is
    unavailable (the measurement then includes reused heap memory, see the module docstring).
    """
    if _LIBC is None or not hasattr(_LIBC, "mallopt"):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = _LIBC.mallopt(m_mmap_threshold, 128 * 1024) == 1
    return ok and _LIBC.mallopt(m_trim_threshold, 128 * 1024) == 1


def release_memory() -> None:
    """Collect garbage and hand glibc's free heap memory back to the OS (``malloc_trim``)."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def resident_kib(key: str = "VmRSS") -> int | None:
    """A ``/proc/self/status`` memory figure in KiB (``VmRSS``, ``VmHWM``), None off Linux."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def reset_peak_resident() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) of this process to its current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


@dataclass
class PeakMemory:
    """Context manager: wall time (s) and peak memory above the level on entry (MiB).

    Args:
        device: where the block allocates: ``"cpu"`` (resident memory) or a CUDA device.
        collect: run the garbage collector on entry (before the clock starts).

    Example:
        >>> import torch
        >>> with PeakMemory() as meter:
        ...     block = torch.ones(1024, 1024, 16)  # 64 MiB
        ...     del block
        >>> meter.seconds > 0 and meter.peak_mib >= 0
        True
    """

    device: str | torch.device = "cpu"
    collect: bool = False
    seconds: float = 0.0
    peak_mib: float = 0.0
    exact: bool = True
    _baseline: int = 0
    _start: float = 0.0

    def _cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"

    def __enter__(self) -> PeakMemory:
        if self.collect:
            gc.collect()
        if self._cuda():
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            self.exact = True
        else:
            if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
                _LIBC.malloc_trim(0)
            self._baseline = 1024 * (resident_kib("VmRSS") or 0)
            self.exact = reset_peak_resident() and self._baseline > 0
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._cuda():
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            hwm = resident_kib("VmHWM") if self.exact else None
            peak = 1024 * (hwm if hwm is not None else _max_rss_kib())
        self.seconds = time.perf_counter() - self._start
        self.peak_mib = max(0, peak - self._baseline) / 2**20


def _max_rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
