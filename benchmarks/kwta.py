"""k-winners-take-all: our batched ``k_winners`` vs a per-image loop (SpykeTorch's algorithm).

Conv1 of Mozafari et al. 2019: 30 features on 28 x 28 positions, T = 15, k = 5, radius 3, batch
64 (``--batch``), 1 thread by default. The loop version is SpykeTorch's ``get_k_winners``
written per image (as SpykeTorch and the SpikingJelly replication call it): the earliest spike
wins, ties by the larger potential at the first spike; each winner removes its feature map and
the ``(2r + 1)^2`` window. ``k_winners`` on CPU tensors runs its C++ kernel (built on first use);
its torch-ops version (the CUDA path, and the fallback without a compiler) is timed too. All
three are checked to pick the same winners, then timed.

    python benchmarks/kwta.py [--batch 64] [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor

from plasticity_plugins.kernels import competition
from plasticity_plugins.kernels.competition import k_winners

FEATURES, SIZE, STEPS = 30, 28, 15


def per_image_k_winners(first_time: Tensor, potential: Tensor, k: int, radius: int) -> Tensor:
    """The reference: one image at a time, one winner at a time (SpykeTorch-style)."""
    batch = first_time.shape[0]
    out = torch.zeros_like(first_time, dtype=torch.bool)
    for b in range(batch):
        # float64: in float32 the combined total loses the potential's low bits
        time_b, pot_b = first_time[b].double(), potential[b].double()
        fired = torch.isfinite(time_b)
        # SpykeTorch's total: earlier spikes dominate, the potential breaks ties
        big = float(pot_b[fired].max()) * STEPS + 1.0 if bool(fired.any()) else 1.0
        total = torch.where(fired, (STEPS - time_b) * big + pot_b, torch.zeros_like(pot_b))
        total = total.clone()
        for _ in range(k):
            flat = int(total.argmax())
            if float(total.view(-1)[flat]) <= 0:
                break
            feature, rest = divmod(flat, SIZE * SIZE)
            row, col = divmod(rest, SIZE)
            out[b, feature, row, col] = True
            total[feature] = 0
            total[
                :,
                max(0, row - radius) : row + radius + 1,
                max(0, col - radius) : col + radius + 1,
            ] = 0
    return out


def interleaved_best_ms(
    functions: dict[str, Callable[[], Tensor]], repeats: int
) -> dict[str, float]:
    """Best-of-``repeats`` wall time in ms of each function (after one warm-up call each), the
    functions taking turns within every repeat so that their ratios hold while the load of a
    shared machine drifts."""
    for function in functions.values():
        function()
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: 1e3 * seconds for name, seconds in best.items()}


def main() -> None:
    """Check agreement, time both, print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--radius", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, FEATURES, SIZE, SIZE)
    first_time = torch.randint(0, STEPS, shape, generator=g).float()
    first_time[torch.rand(shape, generator=g) < 0.9] = float("inf")  # most neurons silent
    potential = torch.where(
        torch.isfinite(first_time), 15.0 + 5.0 * torch.rand(shape, generator=g), 0.0
    )
    compiled = competition.cpu_ops_available()
    ours = k_winners(first_time, potential, args.k, args.radius)
    torch_ops = competition._k_winners_torch(first_time, potential, args.k, args.radius)
    loop = per_image_k_winners(first_time, potential, args.k, args.radius)
    same = bool(torch.equal(ours, loop) and torch.equal(torch_ops, loop))
    times = interleaved_best_ms(
        {
            "ours": lambda: k_winners(first_time, potential, args.k, args.radius),
            "torch": lambda: competition._k_winners_torch(
                first_time, potential, args.k, args.radius
            ),
            "loop": lambda: per_image_k_winners(first_time, potential, args.k, args.radius),
        },
        args.repeats,
    )
    ours_ms, torch_ms, loop_ms = times["ours"], times["torch"], times["loop"]
    print(
        f"k-WTA on [{args.batch}, {FEATURES}, {SIZE}, {SIZE}], k = {args.k}, radius "
        f"{args.radius}, {torch.get_num_threads()} thread(s); best of {args.repeats} timed in "
        "turns"
    )
    print(f"  same winners as the loop: {same}")
    label = "ours (C++ kernel)" if compiled else "ours (no C++ kernel)"
    print(f"  {label:<20}{ours_ms:9.3f} ms")
    print(f"  {'ours (torch ops)':<20}{torch_ms:9.3f} ms   ({loop_ms / torch_ms:.1f}x the loop)")
    print(f"  {'per-image loop':<20}{loop_ms:9.3f} ms")
    print(f"  speed-up: {loop_ms / ours_ms:.1f}x [>= 20]")


if __name__ == "__main__":
    main()
