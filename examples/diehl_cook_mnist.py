"""Diehl & Cook 2015 on the offline MNIST subset: unsupervised STDP, theta, lateral inhibition.

The network (SPECS §4), written natively in the chosen framework and trained by
``plasticity_plugins.attach(model, DiehlCook(...), optimizer=SGD(lr=1))``:

* input: Poisson spikes, rate = pixel / 8 * intensity Hz (intensity 2: at most 63.75 Hz), one
  image = 350 ms cut into ``--steps`` steps (dt = 350 / steps ms); every time constant below is
  converted to steps with that dt. A sample with fewer than 5 excitatory spikes is shown again
  with intensity + 1 (up to ``--max-retries`` times).
* excitatory layer: current-based LIF (BindsNET's version, in mV above rest): tau 100 ms,
  threshold 13 + theta, reset to 0, no refractory period; snnTorch ``Leaky``, SpikingJelly
  ``LIFNode`` or Norse ``LIFBoxCell`` (same membrane after scaling: Norse's input gain
  ``dt * tau_mem_inv`` multiplies its membrane, so its threshold and theta are scaled by it).
* lateral inhibition: the inhibitory population is collapsed into
  :func:`~plasticity_plugins.kernels.competition.lateral_inhibition`: each excitatory spike
  at step t sends ``-inhibition`` to every OTHER excitatory neuron at step t + 1 (BindsNET:
  exc -> inh 22.5 makes the inhibitory twin fire at once, inh -> other exc ``-inh``).
  ``--inhibition 120``, BindsNET's ``eth_mnist.py`` default (its model class's default, 17.5,
  lets ~10 neurons answer every image once the thresholds have grown: no winner-take-all).
* one spike per step (``--one-spike excess``, the default): of the excitatory neurons that
  cross the threshold in the same step only the one furthest over it spikes
  (:func:`~plasticity_plugins.kernels.competition.one_spike_per_step` as the adapter's spike
  mask); BindsNET's Diehl & Cook neurons pick one at random (``--one-spike random``). With
  3.5 ms steps several neurons often cross together, and the inhibition, one step later, cannot
  separate them.
* learning: ``DiehlCook`` (``--variant pair``: BindsNET's pair STDP, the default, matching the
  BindsNET neuron above; ``code``: the original code's triplet-like rule), adaptive theta, clip
  [0, 1] and normalisation of each neuron's input weights to 78 after every optimizer step).
  ``--theta-plus 0.25`` mV per spike, five times the paper's 0.05: the paper trains on 60000
  images, this subset has 4000, and theta is what lets every neuron win some images. Measured
  on 4000 images (snnTorch, random one-spike choice): 0.05 -> 22 % (a dozen neurons win every
  image), 0.1 -> 75 %, 0.25 -> 80 %, 0.5 -> 76 %.

Batching (``--batch-size B``): B images are presented in parallel, each with its own membrane
and inhibition; the weights change once per batch. ``DiehlCook`` averages its update over the
batch, so nu_pre / nu_post are multiplied by B (the batch's updates are summed, as if the B
images had been shown one after another with the weights frozen between them); theta counts
every sample's spikes. B = 1 (the default) is the paper's sequential presentation; with B = 16
the winner of a batch learns the blend of its images (60 % instead of 80 % measured).

Labelling (DiehlCook.assign_labels) uses the spike counts of a pass over the training images
with learning paused; prediction (DiehlCook.predict) on the held-out test images. Both present
50 images in parallel (nothing learns then, so this is exact).

    python examples/diehl_cook_mnist.py --framework snntorch --neurons 100 --train-size 4000
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch
from _stdp_common import accuracy, batches, load_data, progress, save_image_grid, seeded
from torch import Tensor, nn

import plasticity_plugins
from plasticity_plugins import AttachHandle
from plasticity_plugins.kernels.competition import (
    lateral_inhibition,
    normalize_weights_,
    one_spike_per_step,
)
from plasticity_plugins.kernels.encoding import poisson_rate
from plasticity_plugins.rules import DiehlCook

FRAMEWORKS = ("snntorch", "spikingjelly", "norse")
IMAGE_MS = 350.0
EVAL_BATCH = 50


@dataclass(frozen=True)
class Physics:
    """The network's constants in mV above rest and in ms (converted to steps with ``dt``)."""

    tau_mem_ms: float = 100.0
    threshold: float = 13.0
    inhibition: float = 120.0
    theta_plus: float = 0.25
    tau_theta_ms: float = 1e7
    max_rate_hz: float = 255.0 / 8.0  # per unit intensity; intensity 2 -> 63.75 Hz


class DiehlCookNet(nn.Module):
    """Input -> excitatory LIF layer with collapsed lateral inhibition (one step per call).

    Args:
        framework: ``"snntorch"``, ``"spikingjelly"`` or ``"norse"``.
        neurons: number of excitatory neurons.
        tau_steps: membrane time constant in steps.
        physics: thresholds and inhibition.
    """

    def __init__(self, framework: str, neurons: int, tau_steps: float, physics: Physics) -> None:
        super().__init__()
        self.framework = framework
        self.inhibition = physics.inhibition
        self.fc = nn.Linear(784, neurons, bias=False)
        decay = 1.0 - 1.0 / tau_steps  # the three frameworks' common forward-Euler decay
        self.gain = 1.0  # membrane scale of this framework relative to snnTorch
        if framework == "snntorch":
            import snntorch as snn

            self.exc: nn.Module = snn.Leaky(
                beta=decay, threshold=physics.threshold, reset_mechanism="zero", init_hidden=True
            )
        elif framework == "spikingjelly":
            from spikingjelly.activation_based import neuron

            self.exc = neuron.LIFNode(
                tau=tau_steps, decay_input=False, v_threshold=physics.threshold, v_reset=0.0
            )
        elif framework == "norse":
            import norse.torch as norse

            self.gain = 1.0 / tau_steps  # Norse: v += dt tau_mem_inv (-v + i), dt = 1 step
            params = norse.LIFBoxParameters(
                tau_mem_inv=torch.as_tensor(1.0 / tau_steps),
                v_leak=torch.as_tensor(0.0),
                v_th=torch.as_tensor(physics.threshold * self.gain),
                v_reset=torch.as_tensor(0.0),
            )
            self.exc = norse.LIFBoxCell(p=params, dt=1.0)
        else:
            raise ValueError(f"unknown framework {framework!r}; choose from {FRAMEWORKS}")
        self.last: Tensor | None = None
        self.norse_state: object = None

    def begin(self) -> None:
        """Start a new image: no pending inhibition, fresh Norse state (others: handle.reset)."""
        self.last = None
        self.norse_state = None

    def forward(self, x: Tensor) -> Tensor:
        """One time step: ``x`` ``[B, 784]`` input spikes -> ``[B, neurons]`` spikes."""
        current = self.fc(x)
        if self.last is not None:
            current = current + lateral_inhibition(self.last, self.inhibition)
        if self.framework == "norse":
            spikes, self.norse_state = self.exc(current, self.norse_state)
        else:
            spikes = self.exc(current)
        self.last = spikes
        return spikes


def one_random_spike(spikes: Tensor, excess: Tensor) -> Tensor:
    """BindsNET's one-spike choice: one of the neurons that cross together, at random."""
    return one_spike_per_step(spikes)


def present(
    net: DiehlCookNet,
    handle: AttachHandle,
    images: Tensor,
    steps: int,
    dt_ms: float,
    physics: Physics,
    generator: torch.Generator,
    max_retries: int,
) -> Tensor:
    """Show a batch of images; return each sample's excitatory spike counts ``[B, neurons]``.

    Samples with fewer than 5 spikes are shown again at intensity + 1 (SPECS §4); the counts
    of the last presentation are kept.
    """
    counts = torch.zeros(images.shape[0], net.fc.out_features)
    todo = torch.arange(images.shape[0])
    intensity = 2.0
    for attempt in range(max_retries + 1):
        p_max = min(1.0, physics.max_rate_hz * intensity * dt_ms * 1e-3)
        spikes_in = poisson_rate(images[todo], steps, max_rate=p_max, generator=generator)
        handle.reset()
        net.begin()
        total = torch.zeros(len(todo), net.fc.out_features)
        with torch.no_grad():
            for x_t in spikes_in:
                total += net(x_t)
        counts[todo] = total
        quiet = total.sum(1) < 5
        if attempt == max_retries or not bool(quiet.any()):
            break
        todo, intensity = todo[quiet], intensity + 1.0
    return counts


def build_argparser() -> argparse.ArgumentParser:
    """The example's command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--framework", choices=FRAMEWORKS, default="snntorch")
    parser.add_argument("--neurons", type=int, default=100, help="excitatory neurons (100, 400)")
    parser.add_argument("--train-size", type=int, default=4000, help="<= 4990")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--label-size", type=int, default=None, help="default: train size")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100, help="time steps per 350 ms image")
    parser.add_argument("--batch-size", type=int, default=1, help="images shown in parallel")
    parser.add_argument(
        "--variant", choices=("pair", "code"), default="pair", help="DiehlCook STDP variant"
    )
    parser.add_argument("--inhibition", type=float, default=Physics.inhibition, help="mV")
    parser.add_argument("--theta-plus", type=float, default=Physics.theta_plus, help="mV/spike")
    parser.add_argument(
        "--one-spike",
        choices=("excess", "random", "off"),
        default="excess",
        help="one excitatory spike per step: the furthest over threshold, a random one, or all",
    )
    parser.add_argument("--max-retries", type=int, default=2, help="intensity + 1 re-runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--png", default="diehl_cook_receptive_fields.png")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> float:
    """Train, label, test; print the accuracy and save the receptive fields. Returns accuracy."""
    args = build_argparser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = seeded(args.seed)
    physics = Physics(inhibition=args.inhibition, theta_plus=args.theta_plus)
    dt_ms = IMAGE_MS / args.steps
    x_train, y_train, x_test, y_test = load_data(args.train_size, args.test_size, args.seed)

    net = DiehlCookNet(args.framework, args.neurons, physics.tau_mem_ms / dt_ms, physics)
    with torch.no_grad():
        net.fc.weight.copy_(0.3 * (torch.rand(net.fc.weight.shape) + 0.01))
        normalize_weights_(net.fc.weight, 78.0)
    batch = args.batch_size
    rule = DiehlCook(
        nu_pre=1e-4 * batch,
        nu_post=1e-2 * batch,
        tau_pre=20.0 / dt_ms,
        tau_post1=20.0 / dt_ms,
        tau_post2=40.0 / dt_ms,
        theta_plus=physics.theta_plus * net.gain,
        tau_theta=physics.tau_theta_ms / dt_ms,
        variant=args.variant,
    )
    optimizer = torch.optim.SGD([net.fc.weight], lr=1.0)
    handle = plasticity_plugins.attach(net, rule, optimizer=optimizer)
    if args.one_spike != "off":
        choose = one_spike_per_step if args.one_spike == "excess" else one_random_spike
        handle.adapters["exc"].set_spike_mask(choose)
    show = not args.no_progress
    n_batches = math.ceil(len(x_train) / batch)

    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = seeded(args.seed + 1 + epoch)
        for images, _ in progress(
            batches(x_train, y_train, batch, order), show, n_batches, f"train {epoch + 1}"
        ):
            present(net, handle, images, args.steps, dt_ms, physics, generator, args.max_retries)
            optimizer.step()  # DiehlCook: clip to [0, 1], normalise to 78
            optimizer.zero_grad(set_to_none=True)
    train_s = time.perf_counter() - start

    def counts_of(images: Tensor, desc: str) -> Tensor:
        rows = []
        with handle.paused():
            for chunk, _ in progress(
                batches(images, torch.zeros(len(images)), EVAL_BATCH), show, None, desc
            ):
                rows.append(present(net, handle, chunk, args.steps, dt_ms, physics, generator, 0))
        return torch.cat(rows)

    start = time.perf_counter()
    n_label = args.label_size or len(x_train)
    assignments = DiehlCook.assign_labels(
        counts_of(x_train[:n_label], "label"), y_train[:n_label], 10
    )
    predictions = DiehlCook.predict(counts_of(x_test, "test"), assignments, 10)
    eval_s = time.perf_counter() - start
    result = accuracy(predictions, y_test)
    theta = handle.state_dict()["rules"][f"{handle.pairs[0][0]}->{handle.pairs[0][1]}"]["theta"]
    handle.detach()

    print(
        f"{args.framework}: Diehl & Cook, {args.neurons} neurons, T={args.steps} "
        f"(dt {dt_ms:.2f} ms), batch {batch}, {args.epochs} epoch(s) on {len(x_train)} images"
    )
    print(f"  neurons labelled: {int((assignments >= 0).sum())}/{args.neurons}")
    print(f"  theta: mean {float(theta.mean()) / net.gain:.3f} mV, max "
          f"{float(theta.max()) / net.gain:.3f} mV")  # fmt: skip
    print(f"  train {train_s:.1f} s ({1e3 * train_s / (args.epochs * len(x_train)):.1f} ms/image), "
          f"label + test {eval_s:.1f} s")  # fmt: skip
    print(f"  test accuracy: {result:.2f} % on {len(x_test)} images")
    fields = net.fc.weight.detach().reshape(-1, 28, 28)
    labels = [str(int(a)) if a >= 0 else "-" for a in assignments]
    path = save_image_grid(
        fields,
        args.png,
        f"Diehl & Cook receptive fields ({args.framework}, {args.neurons} neurons, {result:.1f} %)",
        labels=labels,
    )
    print(f"  receptive fields: {path}")
    return result


if __name__ == "__main__":
    main()
