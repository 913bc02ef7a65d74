"""``plasticity-plugins`` command line (also ``python -m plasticity_plugins``).

``compare``: BPTT and the local rules in snnTorch, SpikingJelly and Norse on the same data, the
same network (:mod:`plasticity_plugins.compare`); a table, ``results.json``, ``results.csv``
and PNG figures in ``--out``. ``--quick`` is the small version (about 40 s on 2 cores).

``list``: the rules, the framework adapters (with the installed versions) and the data sets.

``stdp-demo``: pair STDP on the offline MNIST subset in snnTorch, SpikingJelly and Norse, the
same network in each (784 Poisson inputs -> matched LIF layer), trained with
``attach(model, STDP())`` and ``torch.optim.SGD(lr=1)``; prints, per framework, the time per
step, the weight change and the spike count, and how far each framework's weights end up from
snnTorch's (in snnTorch units: 0 up to float rounding means the three agree).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import PlasticityError


@dataclass
class DemoRow:
    framework: str
    mode: str
    ms_per_step: float
    mean_abs_dw: float
    spikes_per_neuron_step: float
    max_weight_gap: float


def _run_framework(
    framework: str, images: torch.Tensor, weight0: torch.Tensor, args: argparse.Namespace
) -> tuple[DemoRow, torch.Tensor]:
    from . import attach
    from .kernels.encoding import poisson_rate
    from .networks import NORSE_INPUT_GAIN, single_layer
    from .rules import STDP

    multistep = framework == "spikingjelly"
    net, linear = single_layer(framework, weight0.clone(), multistep=multistep)  # type: ignore[arg-type]
    gain = NORSE_INPUT_GAIN if framework == "norse" else 1.0
    # Norse weights carry its input gain: lr = 1 / gain applies dw in the others' units.
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0 / gain)
    handle = attach(net, STDP(a_plus=args.a_plus, a_minus=args.a_minus, tau_pre=20, tau_post=20))
    generator = torch.Generator().manual_seed(args.seed)
    spikes = 0.0
    elapsed = 0.0
    batches = images.split(args.batch_size)
    with torch.no_grad():
        for batch in batches:
            inputs = poisson_rate(batch, args.steps, max_rate=args.rate, generator=generator)
            handle.reset()
            optimizer.zero_grad()
            start = time.perf_counter()
            if multistep:
                spikes += net(inputs).sum().item()
            elif framework == "norse":
                state = None
                for t in range(args.steps):
                    out, state = net(inputs[t], state)
                    spikes += out.sum().item()
            else:
                for t in range(args.steps):
                    spikes += net(inputs[t]).sum().item()
            elapsed += time.perf_counter() - start
            optimizer.step()
    handle.detach()
    weight = linear.weight.detach() * gain
    n_steps = args.steps * len(batches)
    row = DemoRow(
        framework=framework,
        mode="multi-step" if multistep else "single-step",
        ms_per_step=1e3 * elapsed / n_steps,
        mean_abs_dw=(weight - weight0).abs().mean().item(),
        spikes_per_neuron_step=spikes / (n_steps * args.batch_size * args.neurons),
        max_weight_gap=float("nan"),
    )
    return row, weight


def stdp_demo(args: argparse.Namespace) -> int:
    """Run the STDP demo and print the table (see the module docstring)."""
    from .data.mnist import load_mnist_subset
    from .networks import FRAMEWORKS

    frameworks = args.frameworks or list(FRAMEWORKS)
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown:
        print(
            f"unknown framework(s) {unknown}; choose from {', '.join(FRAMEWORKS)}", file=sys.stderr
        )
        return 2
    torch.manual_seed(args.seed)
    images, _ = load_mnist_subset("train", seed=args.seed)
    images = images[: args.batches * args.batch_size]
    weight0 = torch.rand(args.neurons, 784) * (2 * args.weight_mean)
    print(
        f"pair STDP, offline MNIST subset: {len(images)} images, batch {args.batch_size}, "
        f"T = {args.steps}, 784 -> {args.neurons} LIF, Poisson rate {args.rate}/step, "
        f"{torch.get_num_threads()} threads"
    )
    rows: list[DemoRow] = []
    reference: torch.Tensor | None = None
    for framework in frameworks:
        try:
            row, weight = _run_framework(framework, images, weight0, args)
        except PlasticityError as exc:
            print(f"{framework}: skipped ({exc})", file=sys.stderr)
            continue
        if reference is None:
            reference = weight
        row.max_weight_gap = (weight - reference).abs().max().item()
        rows.append(row)
    header = ("framework", "mode", "ms/step", "mean |dw|", "spikes/neuron/step", "max |w - w_ref|")
    print(" | ".join(f"{h:>18}" for h in header))
    for r in rows:
        cells = (
            r.framework,
            r.mode,
            f"{r.ms_per_step:.3f}",
            f"{r.mean_abs_dw:.3e}",
            f"{r.spikes_per_neuron_step:.4f}",
            f"{r.max_weight_gap:.1e}",
        )
        print(" | ".join(f"{c:>18}" for c in cells))
    if rows:
        print(f"(w_ref: the weights learned in {rows[0].framework})")
    return 0 if rows else 1


def compare(args: argparse.Namespace) -> int:
    """Run the comparison and write its results (see :mod:`plasticity_plugins.compare`)."""
    from pathlib import Path

    from .compare import KITS, METHODS, CompareConfig, Comparison, RunResult
    from .compare.methods import resolve
    from .compare.report import plot, print_table, write_results
    from .data import load_dataset

    try:
        rules = resolve(args.rules, METHODS, "rule")
        frameworks = resolve(args.frameworks, KITS, "framework")
        overrides = {
            key: value
            for key, value in {
                "rules": tuple(rules),
                "frameworks": tuple(frameworks),
                "dataset": args.dataset,
                "epochs": args.epochs,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "hidden": tuple(args.hidden) if args.hidden else None,
                "train_size": args.train_size,
                "test_size": args.test_size,
                "seed": args.seed,
                "device": args.device,
                "lr": args.lr,
            }.items()
            if value is not None
        }
        config = CompareConfig.quick(**overrides) if args.quick else CompareConfig(**overrides)
        device = torch.device(config.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {config.device}: no CUDA device is available here")
        if args.threads:
            torch.set_num_threads(args.threads)
        dataset = load_dataset(
            config.dataset,
            train_size=config.train_size,
            test_size=config.test_size,
            seed=config.seed,
            root=args.data_root,
        )
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, TypeError, OSError, PlasticityError) as exc:
        print(f"plasticity-plugins compare: {exc}", file=sys.stderr)
        return 2
    from .compare.memory import use_exact_allocation

    use_exact_allocation()
    steps = f"T = {config.steps}" if dataset.kind == "static" else f"{dataset.native_steps} frames"
    title = (
        f"{dataset.name}: {len(dataset.y_train)} train / {len(dataset.y_test)} test, "
        f"{'-'.join(map(str, (math.prod(dataset.input_shape), *config.hidden)))}"
        f"-{dataset.num_classes}, {steps}, batch {config.batch_size}, {config.epochs} epoch(s), "
        f"seed {config.seed}, {config.device}"
    )
    print(f"compare: {title}")
    print(f"  {len(rules)} rule(s) x {len(frameworks)} framework(s); results in {out}/")
    results: list[RunResult] = []

    def finished(result: RunResult) -> None:
        results.append(result)
        write_results(results, config, dataset.describe(), out)
        status = (
            f"{result.accuracy:.2f} % in {result.train_seconds:.1f} s"
            if result.status == "ok"
            else result.error
        )
        print(f"  {result.label:<13} {result.framework:<13} {status}", flush=True)

    interrupted = False
    start = time.perf_counter()
    try:
        Comparison(config, dataset, progress=not args.no_progress).run_all(finished)
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted: keeping the {len(results)} finished run(s)", file=sys.stderr)
    if not results:
        return 130 if interrupted else 1
    print_table(results, title)
    for definition in dict.fromkeys(r.label + ": " + r.accuracy_definition for r in results):
        print(f"  accuracy of {definition}")
    print(
        "  ms/step: training steps only, per time step of a batch; peak MiB: a training step's "
        "peak memory above its start (resident memory on the CPU, allocated memory on CUDA)"
    )
    try:
        figures = plot(results, out, title)
    except ImportError:
        figures = []
        print("  (no figures: pip install matplotlib)", file=sys.stderr)
    written = ["results.json", "results.csv", *(f.name for f in figures)]
    print(f"  wrote {', '.join(written)} to {out}/ in {time.perf_counter() - start:.0f} s")
    if interrupted:
        return 130
    return 0 if all(r.status == "ok" for r in results) else 1


def list_available(args: argparse.Namespace) -> int:
    """Print the rules, adapters and data sets (``plasticity-plugins list``)."""
    del args
    from . import rules as rule_module
    from .adapters import supported_neurons
    from .compare import ELSEWHERE, KITS, METHODS
    from .data import available_datasets

    print("rules (compare --rules):")
    for method in METHODS.values():
        print(f"  {method.name:<12} {method.description}")
        print(f"  {'':<12} accuracy: {method.accuracy}")
    print("other rules (plasticity_plugins.rules, not in compare):")
    for name in rule_module.__all__:
        if name in ELSEWHERE:
            print(f"  {name:<12} {ELSEWHERE[name]}")
    print("adapters (compare --frameworks):")
    for kit in KITS.values():
        version = kit.version()
        installed = f"{kit.distribution} {version}" if version else "not installed"
        neurons = (
            ", ".join(supported_neurons(kit.name))
            if version
            else (f"pip install 'plasticity-plugins[{kit.name}]'")
        )
        print(f"  {kit.name:<12} {installed}: {neurons}")
    print("datasets (compare --dataset):")
    for info in available_datasets():
        state = "available" if info.available else "not available"
        extra = f", extra [{info.extra}]" if info.extra else ""
        print(f"  {info.name:<12} {info.kind:<6} {state} ({info.where}{extra}): {info.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``plasticity-plugins``."""
    parser = argparse.ArgumentParser(
        prog="plasticity-plugins",
        description="Local learning rules for snnTorch, SpikingJelly and Norse models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "stdp-demo", help="pair STDP on the offline MNIST subset in every installed framework"
    )
    demo.add_argument("--frameworks", nargs="+", help="subset of: snntorch spikingjelly norse")
    demo.add_argument("--neurons", type=int, default=100)
    demo.add_argument("--steps", type=int, default=100, help="time steps per image")
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--batches", type=int, default=4)
    demo.add_argument("--rate", type=float, default=0.1, help="spike probability per step")
    demo.add_argument("--weight-mean", type=float, default=0.04)
    demo.add_argument("--a-plus", type=float, default=1e-3)
    demo.add_argument("--a-minus", type=float, default=1e-3)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=stdp_demo)

    cmp = sub.add_parser(
        "compare",
        help="BPTT vs local rules x snnTorch / SpikingJelly / Norse on the same data",
        description="Train the same network with BPTT and each local rule in each framework on "
        "the same data; print a table and write results.json, results.csv and PNG figures.",
    )
    cmp.add_argument("--quick", action="store_true", help="small settings (minutes on 2 cores)")
    cmp.add_argument("--rules", nargs="+", default=["all"], help="names from `list`, or all")
    cmp.add_argument("--frameworks", nargs="+", default=["all"], help="names, or all")
    cmp.add_argument("--dataset", default=None, help="a data set from `list` (mnist-subset)")
    cmp.add_argument("--data-root", default=None, help="folder of data sets on disk")
    cmp.add_argument("--epochs", type=int, default=None)
    cmp.add_argument("--steps", type=int, default=None, help="time steps T (static data)")
    cmp.add_argument("--batch-size", type=int, default=None)
    cmp.add_argument("--hidden", type=int, nargs="+", default=None, help="hidden layer sizes")
    cmp.add_argument("--train-size", type=int, default=None)
    cmp.add_argument("--test-size", type=int, default=None)
    cmp.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    cmp.add_argument("--seed", type=int, default=None)
    cmp.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1, ...")
    cmp.add_argument("--threads", type=int, default=None, help="torch threads")
    cmp.add_argument("--out", default="compare-results", help="output folder")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bars")
    cmp.set_defaults(func=compare)

    listing = sub.add_parser("list", help="rules, adapters and data sets available here")
    listing.set_defaults(func=list_available)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``plasticity-plugins`` console script."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        # Norse 1.1 uses torch.jit.script at import time; the deprecation is not the user's.
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
