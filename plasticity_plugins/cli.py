"""``plasticity-plugins`` command line (also ``python -m plasticity_plugins``).

``stdp-demo``: pair STDP on the offline MNIST subset in snnTorch, SpikingJelly and Norse, the
same network in each (784 Poisson inputs -> matched LIF layer), trained with
``attach(model, STDP())`` and ``torch.optim.SGD(lr=1)``; prints, per framework, the time per
step, the weight change and the spike count, and how far each framework's weights end up from
snnTorch's (in snnTorch units: 0 up to float rounding means the three agree).
"""

from __future__ import annotations

import argparse
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
