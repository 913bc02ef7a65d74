"""Throughput of the Lambert W kernel against scipy.special.lambertw.

Usage::

    python benchmarks/lambertw.py [--n 1000000] [--repeat 7] [--threads 1] [--no-cpu] [--no-gpu]

CPU: 10^6 float64 values uniform in [-1/e, 50] (the Fast & Deep range), timed in the same run,
interleaved, best of ``--repeat``: scipy.special.lambertw (single-threaded), our eager torch
implementation, our torch.compile'd loop (the op's CPU path for large inputs, after a first call
that compiles it, whose time is printed), and the op itself. Ratios are scipy's time over ours.
``--threads`` sets torch's intra-op threads (default 1, as scipy uses one core).

GPU (when CUDA is available): the CUDA kernel on 10^6 .. 10^8 values, float64 and float32, timed
with CUDA events; effective bandwidth = bytes read + written / time, as a fraction of the card's
peak (from the memory clock and bus width, else 3.35 TB/s for an H100), next to the eager torch
implementation on the GPU and a device-to-device copy of the same bytes.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from plasticity_plugins.kernels import lambertw as lw


def _best_of(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time in seconds of each function, measured interleaved."""
    best = {name: math.inf for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_cpu(n: int, repeat: int) -> None:
    from scipy.special import lambertw as scipy_lambertw

    generator = torch.Generator().manual_seed(0)
    low = -math.exp(-1)
    x = torch.rand(n, dtype=torch.float64, generator=generator) * (50.0 - low) + low
    x_np = x.numpy()

    start = time.perf_counter()
    compiled = lw._compiled_w0()
    compiled(x)
    compile_s = time.perf_counter() - start
    print(f"torch.compile first call (compiles, float64): {compile_s:.1f} s")

    fns: dict[str, Callable[[], object]] = {
        "scipy.special.lambertw": lambda: scipy_lambertw(x_np, k=0).real,
        "ours, eager torch": lambda: lw.lambertw_reference(x),
        "ours, torch.compile": lambda: compiled(x),
        "ours, lambertw() op": lambda: lw.lambertw(x),
    }
    times = _best_of(fns, repeat)
    ref = scipy_lambertw(x_np, k=0).real
    err = np.max(np.abs(lw.lambertw(x).numpy() - ref) / np.abs(ref))
    print(f"CPU, {n:.0e} float64 values in [-1/e, 50], torch threads={torch.get_num_threads()}")
    print(f"  implementation used by lambertw(): {lw.lambertw_implementation(x)}")
    scipy_s = times["scipy.special.lambertw"]
    for name, seconds in times.items():
        print(f"  {name:24s} {seconds * 1e3:9.2f} ms   {scipy_s / seconds:6.1f}x scipy")
    print(f"  max relative difference to scipy: {err:.2e}")


def _peak_bandwidth(device: int) -> tuple[float, str]:
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0) or 0
    bus_bits = getattr(props, "memory_bus_width", 0) or 0
    if clock_khz and bus_bits:
        # double data rate: two transfers per clock
        return 2.0 * clock_khz * 1e3 * bus_bits / 8.0, "from memory clock and bus width"
    return 3.35e12, "assumed H100 SXM HBM3 peak"


def _cuda_time(fn: Callable[[], object], repeat: int) -> float:
    """Median time of ``fn`` in seconds, with CUDA events."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return float(np.median(times))


def bench_cuda(repeat: int) -> None:
    device = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device)
    peak, how = _peak_bandwidth(device)
    print(f"GPU: {props.name}, peak bandwidth {peak / 1e12:.2f} TB/s ({how})")
    probe = torch.zeros(1, device="cuda", dtype=torch.float64)
    start = time.perf_counter()
    implementation = lw.lambertw_implementation(probe)  # builds the extension
    print(f"  implementation: {implementation} (build/load {time.perf_counter() - start:.1f} s)")
    check = torch.rand(1_000_000, dtype=torch.float64) * 50 - math.exp(-1)
    diff = (lw.lambertw(check.cuda()).cpu() - lw.lambertw_reference(check)).abs().max().item()
    print(f"  max |CUDA - CPU reference| on 1e6 float64 values: {diff:.1e}")
    for dtype in (torch.float64, torch.float32):
        for n in (10**6, 10**7, 10**8):
            x = torch.rand(n, device="cuda", dtype=dtype) * (50 + math.exp(-1)) - math.exp(-1)
            moved = 2 * n * x.element_size()
            kernel_s = _cuda_time(functools.partial(lw.lambertw, x), repeat)
            copy_s = _cuda_time(x.clone, repeat)
            line = (
                f"  {dtype!s:14s} n={n:.0e}: {kernel_s * 1e3:8.3f} ms, "
                f"{moved / kernel_s / 1e9:7.1f} GB/s = {moved / kernel_s / peak:5.1%} of peak "
                f"(copy: {moved / copy_s / peak:5.1%})"
            )
            if n <= 10**7:
                eager = functools.partial(lw.lambertw_reference, x)
                eager_s = _cuda_time(eager, max(3, repeat // 4))
                line += f"; eager torch {eager_s * 1e3:.2f} ms ({eager_s / kernel_s:.1f}x)"
            print(line)
            del x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU part")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.no_cpu:
        bench_cpu(args.n, args.repeat)
    if args.no_gpu:
        return
    if torch.cuda.is_available():
        bench_cuda(max(args.repeat, 20))
    else:
        print("GPU: no CUDA device; GPU figures skipped")


if __name__ == "__main__":
    main()
