"""What online training can cost at best here: BPTT against hand-written per-step loops.

The time target of ``benchmarks/online_memory.py`` (a local rule <= 0.8x BPTT per iteration) is
checked against loops written by hand, without this library, on the same snnTorch model
(``examples/swap_bptt_snntorch.py``'s 784-512-512-10 ``Leaky`` MLP, batch 32, Poisson input):

* ``bptt``: the example's BPTT loop (loss summed over steps, one ``backward``);
* ``detach every step``: the membranes detached before each step, ``backward`` on each step's
  loss (truncated BPTT with one step: the memory of the local rules, a full backward per step);
* ``minimal DECOLLE``: DECOLLE's update with nothing else: per layer an input trace, a fixed
  random readout, the clamped readout error through the readout and a fast-sigmoid surrogate of
  the membrane into ``weight.grad``; no dropout, bias, votes or input checks;
* ``forward only``: the forward under ``torch.no_grad()``, the floor of any method.

All timed in turns (best of ``--rounds``) in one process. Ratios below 0.8 for the hand-written
loops mean the target is reachable on this machine; above, no implementation of these rules is
likely to reach it.

    python benchmarks/online_floor.py [--steps 400] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import snntorch as snn
from swap_bptt_snntorch import build_model, reset_neurons, train_bptt


def detach_every_step(
    net: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer
) -> None:
    """Truncated BPTT with one step: membranes detached, one backward per step."""
    reset_neurons(net)
    optimizer.zero_grad()
    leaky = [m for m in net.modules() if isinstance(m, snn.Leaky)]
    for x_t in x:
        for neuron in leaky:
            neuron.mem = neuron.mem.detach()
        F.cross_entropy(net(x_t), y).backward()
    optimizer.step()


def minimal_decolle(readouts: list[Tensor]) -> Callable[..., None]:
    """DECOLLE's per-layer update and nothing else (module docstring)."""

    def train(net: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> None:
        linears = [m for m in net if isinstance(m, nn.Linear)]
        leaky = [m for m in net if isinstance(m, snn.Leaky)]
        reset_neurons(net)
        optimizer.zero_grad()
        onehot = F.one_hot(y, 10).to(x.dtype)
        traces = [torch.zeros(x.shape[1], layer.in_features) for layer in linears]
        for layer in linears:
            layer.weight.grad = torch.zeros_like(layer.weight)
        with torch.no_grad():
            for x_t in x:
                layer_input = x_t
                for layer, neuron, readout, trace in zip(
                    linears, leaky, readouts, traces, strict=True
                ):
                    trace.mul_(0.9).add_(layer_input)
                    spikes = neuron(layer(layer_input))
                    surrogate = torch.reciprocal((10.0 * (neuron.mem - 1.0).abs() + 1.0) ** 2)
                    error = (spikes @ readout.T - onehot).clamp_(-1.0, 1.0)
                    layer.weight.grad.addmm_(((error @ readout) * surrogate).T, trace)
                    layer_input = spikes
        optimizer.step()

    return train


def forward_only(net: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> None:
    """The forward pass alone, without a graph."""
    reset_neurons(net)
    with torch.no_grad():
        for x_t in x:
            net(x_t)


def main() -> None:
    """Time the four loops in turns and print ms per iteration and the ratios to BPTT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = (torch.rand(args.steps, 32, 784) < 0.15).float()
    y = torch.randint(0, 10, (32,))
    readouts = [torch.rand(10, 512) - 0.5 for _ in range(2)] + [torch.rand(10, 10) - 0.5]
    loops: dict[str, Callable[..., None]] = {
        "bptt": train_bptt,
        "detach every step": detach_every_step,
        "minimal DECOLLE": minimal_decolle(readouts),
        "forward only": forward_only,
    }
    nets = {name: build_model((512, 512)) for name in loops}
    optimizers = {name: torch.optim.SGD(net.parameters(), lr=0.0) for name, net in nets.items()}
    best = dict.fromkeys(loops, float("inf"))
    for name, loop in loops.items():  # warm-up
        loop(nets[name], x[:5], y, optimizers[name])
    for _ in range(args.rounds):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop(nets[name], x, y, optimizers[name])
            best[name] = min(best[name], time.perf_counter() - start)
    print(
        f"snnTorch 784-512-512-10 Leaky, batch 32, T = {args.steps}, {args.threads} thread(s), "
        f"best of {args.rounds} in turns"
    )
    for name, seconds in best.items():
        print(f"  {name:<20} {1e3 * seconds:8.0f} ms/iter  {seconds / best['bptt']:5.2f}x BPTT")
    print("the online rules' time target: <= 0.80x BPTT")


if __name__ == "__main__":
    main()
