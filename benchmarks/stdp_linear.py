"""Pair STDP on Linear 784 -> 400 + LIF: our rule vs the frameworks' own STDP, one run.

Batch 32, T = 100 steps, Poisson input at 10 % per step, 2 threads (``--threads``), weights
uniform in [0, 0.013) (``--weight-scale``), which makes the LIF neurons fire at ~17 % per step
(printed; 0.05 makes every neuron fire at every step). Prints ms per time step of:

* the bare forward (snnTorch ``Leaky`` / SpikingJelly ``LIFNode``, single-step, no grad),
* the forward with the adapter attached but a rule that does nothing (hook + adapter overhead),
* the forward with our ``STDP`` attached,
* SpikingJelly ``learning.STDPLearner`` (its own forward + its step, per time step),
* Norse ``stdp_step_linear`` (the update alone, given pre and post spikes).

``--kernel-shapes`` adds, for several layer shapes (power-of-two widths among them), the time
of one step of the C++ kernel ``pair_stdp_linear_`` (both traces and both terms) against
the two dense products and trace updates it replaces, 10 % spikes on both sides, in turns.

The first three are timed in turns (bare, adapter, STDP, bare, ...: the best of ``--repeats``
each), so their ratios hold while the load of a shared machine drifts. Prints the ratios the
project targets: adapter overhead <= 1.15x the bare forward, our STDP's added
cost <= 1x the bare forward, >= 30x faster than STDPLearner, faster than Norse's update; and,
for the first two, the same ratios within each round (median, and in how many rounds the
target held), which show how far the machine's load moves them.

    python benchmarks/stdp_linear.py [--steps 100] [--repeats 15] [--threads 2]
                                      [--weight-scale 0.013] [--kernel-shapes]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from _timing import interleaved_ms, interleaved_rounds, per_step_ms, round_ratios
from torch import nn

import plasticity_plugins
from plasticity_plugins.networks import matched_lif
from plasticity_plugins.rules import STDP, LocalRule, PairView, RuleState

N_IN, N_OUT, BATCH = 784, 400, 32


class ObserveOnly(LocalRule):
    """A rule that receives every pair view and does nothing: measures the attach overhead."""

    def step(self, view: PairView, state: RuleState) -> None:
        return None


def framework_net(framework: str, weight: torch.Tensor) -> nn.Sequential:
    linear = nn.Linear(N_IN, N_OUT, bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return nn.Sequential(linear, matched_lif(framework))  # type: ignore[arg-type]


def stepper(net: nn.Module, reset: Callable[[], None]) -> Callable[[torch.Tensor], None]:
    def run(inputs: torch.Tensor) -> None:
        reset()
        with torch.no_grad():
            for x_t in inputs:
                net(x_t)

    return run


KERNEL_SHAPES = ((784, 400), (512, 512), (1024, 256), (256, 1024), (500, 500))


def kernel_vs_dense(n_in: int, n_out: int, repeats: int, steps: int = 50) -> dict[str, float]:
    """ms per step of the Linear STDP kernel and of the dense products it replaces, in turns."""
    step_op = torch.ops.plasticity_plugins_cpu.pair_stdp_linear_
    pre = (torch.rand(steps, BATCH, n_in) < 0.1).float()
    post = (torch.rand(steps, BATCH, n_out) < 0.1).float()
    acc = torch.zeros(n_out, n_in)

    def kernel(pre_seq: torch.Tensor) -> None:
        pre_trace, post_trace = torch.zeros(BATCH, n_in), torch.zeros(BATCH, n_out)
        for pre_t, post_t in zip(pre_seq, post, strict=False):
            pre_trace, post_trace = step_op(
                acc, pre_t, pre_trace, post_t, post_trace, 0.9, 0.9, False, 1.0, -1.0
            )

    def dense(pre_seq: torch.Tensor) -> None:
        pre_trace, post_trace = torch.zeros(BATCH, n_in), torch.zeros(BATCH, n_out)
        for pre_t, post_t in zip(pre_seq, post, strict=False):
            pre_trace = pre_trace.mul(0.9).add_(pre_t)
            acc.addmm_(post_t.T, pre_trace).addmm_(post_trace.T, pre_t, alpha=-0.9)
            post_trace = post_trace.mul(0.9).add_(post_t)

    return interleaved_ms({"kernel": (kernel, pre), "dense": (dense, pre)}, repeats, 5)


def kernel_shapes(repeats: int) -> None:
    """Print the kernel against the dense products for each of KERNEL_SHAPES."""
    from plasticity_plugins.kernels._extension_build import cpu_ops_available

    if not cpu_ops_available():
        print("kernel shapes: the C++ CPU library is unavailable (no compiler?)")
        return
    print(f"one STDP step on a Linear synapse, batch {BATCH}, 10 % spikes, best of {repeats}:")
    for n_in, n_out in KERNEL_SHAPES:
        times = kernel_vs_dense(n_in, n_out, repeats)
        print(
            f"  {n_in:>5} -> {n_out:<5} kernel {times['kernel']:.3f} ms, two dense products "
            f"{times['dense']:.3f} ms: {times['dense'] / times['kernel']:.2f}x faster"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weight-scale", type=float, default=0.013)
    parser.add_argument("--kernel-shapes", action="store_true", help="kernel vs dense per shape")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    inputs = (torch.rand(args.steps, BATCH, N_IN) < 0.1).float()
    weight = torch.rand(N_OUT, N_IN) * args.weight_scale
    rows: dict[str, float] = {}
    rounds: dict[str, list[float]] = {}

    from spikingjelly.activation_based import functional, learning

    probe = framework_net("spikingjelly", weight)
    with torch.no_grad():
        post_rate = torch.stack([probe(x_t) for x_t in inputs]).mean().item()

    handles = []
    for framework in ("snntorch", "spikingjelly"):
        # Three copies of the same network, timed in turns: bare, adapter only, our STDP.
        runs: dict[str, Callable[[torch.Tensor], None]] = {}
        for label, rule in (
            ("forward", None),
            ("forward + adapter", ObserveOnly()),
            ("forward + our STDP", STDP(tau_pre=20, tau_post=20)),
        ):
            net = framework_net(framework, weight)
            if rule is None:
                neuron = net[1]
                reset = (
                    neuron.reset_mem
                    if framework == "snntorch"
                    else (lambda n=net: functional.reset_net(n))
                )
            else:
                handle = plasticity_plugins.attach(net, rule)
                handles.append(handle)
                reset = handle.reset
            runs[f"{framework} {label}"] = stepper(net, reset)
        timed = {name: (run, inputs) for name, run in runs.items()}
        rounds.update(interleaved_rounds(timed, args.repeats, warmup_steps=10))
    rows.update({name: min(times) for name, times in rounds.items()})
    for handle in handles:
        handle.detach()

    sj_net = framework_net("spikingjelly", weight)
    learner = learning.STDPLearner("s", sj_net[0], sj_net[1], tau_pre=20.0, tau_post=20.0)

    def sj_learner(sequence: torch.Tensor) -> None:
        functional.reset_net(sj_net)
        learner.reset()
        with torch.no_grad():
            for x_t in sequence:
                sj_net(x_t)
                learner.step(on_grad=True)

    rows["spikingjelly forward + STDPLearner"] = per_step_ms(
        sj_learner, inputs[: max(10, args.steps // 5)], 1, warmup_steps=10
    )

    from norse.torch.functional.stdp import STDPParameters, STDPState, stdp_step_linear

    post_spikes = (torch.rand(args.steps, BATCH, N_OUT) < post_rate).float()
    w = weight.clone()

    def norse_update(sequence: torch.Tensor) -> None:
        state = STDPState(torch.zeros(BATCH, N_IN), torch.zeros(BATCH, N_OUT))
        nonlocal w
        for t, x_t in enumerate(sequence):
            w, state = stdp_step_linear(x_t, post_spikes[t], w, state, STDPParameters())

    rows["norse stdp_step_linear (update only)"] = per_step_ms(
        norse_update, inputs, args.repeats, warmup_steps=10
    )

    print(
        f"Linear {N_IN}->{N_OUT} + LIF, batch {BATCH}, T = {args.steps}, Poisson 10 %, "
        f"weights U[0, {args.weight_scale}), post-synaptic rate {100 * post_rate:.1f} %, "
        f"{torch.get_num_threads()} threads; best of {args.repeats}"
    )
    for name, ms in rows.items():
        print(f"  {name:<42} {ms:8.3f} ms/step")
    print("ratios (targets in brackets):")
    for framework in ("snntorch", "spikingjelly"):
        bare = rows[f"{framework} forward"]
        ours_added = rows[f"{framework} forward + our STDP"] - bare
        print(
            f"  {framework}: adapter overhead {rows[f'{framework} forward + adapter'] / bare:.2f}x "
            f"[<= 1.15]; STDP added cost {ours_added / bare:.2f}x forward [<= 1]"
        )
        # the same ratios in each round (the three runs timed back to back): their spread shows
        # how far this machine's load moves them
        bare_rounds = rounds[f"{framework} forward"]
        adapter = round_ratios(rounds[f"{framework} forward + adapter"], bare_rounds)
        added = [
            r - 1 for r in round_ratios(rounds[f"{framework} forward + our STDP"], bare_rounds)
        ]
        print(
            f"    per round ({len(bare_rounds)}): adapter median "
            f"{statistics.median(adapter):.2f}x, <= 1.15 in {sum(r <= 1.15 for r in adapter)}; "
            "STDP added median "
            f"{statistics.median(added):.2f}x, <= 1 in {sum(r <= 1 for r in added)}"
        )
    sj_bare = rows["spikingjelly forward"]
    ours_sj_added = rows["spikingjelly forward + our STDP"] - sj_bare
    learner_added = rows["spikingjelly forward + STDPLearner"] - sj_bare
    print(f"  STDPLearner added cost / ours: {learner_added / ours_sj_added:.1f}x [>= 30]")
    norse_ms = rows["norse stdp_step_linear (update only)"]
    print(f"  Norse update / our added cost: {norse_ms / ours_sj_added:.1f}x [> 1]")
    if args.kernel_shapes:
        kernel_shapes(args.repeats)


if __name__ == "__main__":
    main()
