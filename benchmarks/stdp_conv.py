"""Pair STDP on Conv2d 2 -> 32 (5x5, padding 2) + LIF, 34 x 34 input, batch 32: ours vs theirs.

One run, same input, 2 threads by default (``--threads``). Prints ms per time step of:

* the bare forward (SpikingJelly ``LIFNode``, single-step, no grad),
* the forward with our ``STDP`` attached (``plasticity_plugins.attach``),
* SpikingJelly ``learning.STDPLearner`` (its own forward + its step, per time step),
* Norse ``stdp_step_conv2d`` (the update alone, given pre and post spikes),

and the ratios the project targets: SpikingJelly's learner added cost >= 10x ours, Norse's
update slower than our added cost. (SpikingJelly's learner and Norse's update are run on fewer
steps when they are slow; ms/step is what is compared.) All but Norse are timed in turns
(bare, ours, learner, bare, ...; the best of ``--repeats`` each, each after a short warm-up), so
that the added costs, differences of two timings, hold while the load of a shared machine drifts.

    python benchmarks/stdp_conv.py [--steps 100] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
from _timing import interleaved_ms, per_step_ms
from torch import nn

import plasticity_plugins
from plasticity_plugins.networks import matched_lif
from plasticity_plugins.rules import STDP

C_IN, C_OUT, KERNEL, SIZE, BATCH = 2, 32, 5, 34, 32


def conv_net(weight: torch.Tensor) -> nn.Sequential:
    """SpikingJelly ``Conv2d -> LIFNode`` (single-step) with ``weight``."""
    from spikingjelly.activation_based import layer

    conv = layer.Conv2d(C_IN, C_OUT, KERNEL, padding=KERNEL // 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return nn.Sequential(conv, matched_lif("spikingjelly"))


def main() -> None:
    """Run the four measurements and print them with the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slow-steps", type=int, default=20, help="steps for the slow baselines")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    inputs = (torch.rand(args.steps, BATCH, C_IN, SIZE, SIZE) < 0.1).float()
    weight = torch.rand(C_OUT, C_IN, KERNEL, KERNEL) * 0.2
    slow = inputs[: min(args.steps, args.slow_steps)]
    rows: dict[str, float] = {}

    from spikingjelly.activation_based import functional, learning

    bare_net, our_net, sj_net = conv_net(weight), conv_net(weight), conv_net(weight)

    def bare(sequence: torch.Tensor) -> None:
        functional.reset_net(bare_net)
        with torch.no_grad():
            for x_t in sequence:
                bare_net(x_t)

    handle = plasticity_plugins.attach(our_net, STDP(tau_pre=20, tau_post=20))

    def ours(sequence: torch.Tensor) -> None:
        handle.reset()
        with torch.no_grad():
            for x_t in sequence:
                our_net(x_t)

    learner = learning.STDPLearner("s", sj_net[0], sj_net[1], tau_pre=20.0, tau_post=20.0)

    def sj_learner(sequence: torch.Tensor) -> None:
        functional.reset_net(sj_net)
        learner.reset()
        with torch.no_grad():
            for x_t in sequence:
                sj_net(x_t)
                learner.step(on_grad=True)

    rows.update(
        interleaved_ms(
            {
                "spikingjelly forward": (bare, inputs),
                "spikingjelly forward + our STDP": (ours, inputs),
                "spikingjelly forward + STDPLearner": (sj_learner, slow),
            },
            args.repeats,
            warmup_steps=3,
        )
    )
    handle.detach()
    with torch.no_grad():
        functional.reset_net(bare_net)
        spikes_fraction = float(torch.stack([bare_net(x_t) for x_t in inputs[:20]]).mean())

    from norse.torch.functional.stdp import STDPParameters, STDPState, stdp_step_conv2d

    post_spikes = (torch.rand(args.steps, BATCH, C_OUT, SIZE, SIZE) < 0.05).float()
    params = STDPParameters(convolutional=True, stride=1, padding=KERNEL // 2, dilation=1)

    def norse_update(sequence: torch.Tensor) -> None:
        w = weight.clone()
        state = STDPState(
            torch.zeros(BATCH, C_IN, SIZE, SIZE), torch.zeros(BATCH, C_OUT, SIZE, SIZE)
        )
        for t, x_t in enumerate(sequence):
            w, state = stdp_step_conv2d(x_t, post_spikes[t], w, state, params)

    rows["norse stdp_step_conv2d (update only)"] = per_step_ms(
        norse_update, slow, args.repeats, warmup_steps=3
    )

    print(
        f"Conv2d {C_IN}->{C_OUT} {KERNEL}x{KERNEL} on {SIZE}x{SIZE} + LIF, batch {BATCH}, "
        f"T = {args.steps} ({len(slow)} for the baselines), Poisson 10 %, output spike rate "
        f"{100 * spikes_fraction:.1f} %, {torch.get_num_threads()} threads; best of "
        f"{args.repeats}"
    )
    for name, ms in rows.items():
        print(f"  {name:<48} {ms:8.3f} ms/step")
    bare_ms = rows["spikingjelly forward"]
    ours_added = rows["spikingjelly forward + our STDP"] - bare_ms
    learner_added = rows["spikingjelly forward + STDPLearner"] - bare_ms
    norse_ms = rows["norse stdp_step_conv2d (update only)"]
    print("ratios (targets in brackets):")
    print(f"  our STDP added cost: {ours_added:.3f} ms/step = {ours_added / bare_ms:.2f}x forward")
    print(f"  STDPLearner added cost / ours: {learner_added / ours_added:.1f}x [>= 10]")
    total_ratio = (
        rows["spikingjelly forward + STDPLearner"] / rows["spikingjelly forward + our STDP"]
    )
    print(f"  STDPLearner total / ours total: {total_ratio:.1f}x")
    print(f"  Norse update / our added cost: {norse_ms / ours_added:.1f}x [> 1]")


if __name__ == "__main__":
    main()
