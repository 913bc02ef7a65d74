"""Mozafari et al. 2019 on the offline MNIST subset: STDP + k-WTA in conv1/conv2, R-STDP in conv3.

The network (SPECS §5), written natively in snnTorch or SpikingJelly, trained layer by layer with
``plasticity_plugins.attach`` and the optimizer ``SGD(lr=1)``:

* input: 6 DoG maps (:func:`~plasticity_plugins.kernels.encoding.dog_preprocess`), then
  intensity-to-latency over T = 15 steps.
* neurons: non-leaky integrate-and-fire; only each neuron's first spike matters. As in
  SpykeTorch, a layer's potential at step t is its kernel applied to the spike WAVE (every input
  that has fired so far, counted once): each IF neuron therefore receives only the NEW spikes
  of its input (first spikes), and keeps firing after its first spike (snnTorch ``Leaky(beta=1,
  reset_mechanism="none")``; SpikingJelly ``IFNode`` multi-step, turned into waves with a
  running max). Pooling acts on the waves; the next layer gets the pooled waves' new spikes.
* conv1 6 -> 30 (5x5, thr 15) -> pool 2 -> conv2 30 -> 250 (3x3, thr 10) -> pool 3 (stride 3,
  padding 1) -> conv3 250 -> 200 (5x5 on 5x5: one position; 20 maps per class).
* learning: conv1 ``MozafariSTDP(k=5, radius=3)``, conv2 ``MozafariSTDP(k=8, radius=1)`` (the
  paper's rates, ``update_rates`` per image; ``pointwise=True``: only the first feature to
  spike at a position can win there, SpykeTorch's pointwise inhibition), conv3 ``RSTDP`` (k =
  1; ``rule.reward(+1 / -1)`` per image, ``adapt_rates`` every ``--adapt-every`` = 1000 images
  from the last block's hit and miss ratios, as SpykeTorch's ``MozafariDeep.py``).
* decision: SpykeTorch's ``fire`` without a threshold makes every conv3 map with a positive
  potential spike at the LAST step only, so the map with the highest final potential (the
  kernel applied to every pooled conv2 feature that fired at all) decides (``// 20``), and
  R-STDP treats every input that fired as causal, every silent one as anti-causal. conv3
  therefore sees the pooled conv2 wave at the last step as one time step, with a threshold just
  above 0 (:meth:`MozafariNet.decision_layer`). conv1 and conv2 are frozen during R-STDP, so
  their output is computed once per image (the same numbers as recomputing it every epoch).

Reduced against the paper (stated, not hidden), to run in about 17 min on one CPU core: layers
are trained on ``--l1-images`` / ``--l2-images`` images (paper: 2 and 4 epochs of 60000) and
conv3 for ``--l3-epochs`` epochs of the 4000-image training subset (paper: up to 680 of 60000);
to let the STDP rates reach their cap of 0.15 within these few images, they double every
``--schedule-every`` = 100 images (paper: every 500), which brings conv1 and conv2 to nearly
binary weights; images are shown one at a time (``--batch-size 1``; a larger batch averages
the winners' updates over the batch, i.e. divides the per-image learning rate by the batch
size).

    python examples/mozafari_rstdp_mnist.py --framework spikingjelly
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _stdp_common import accuracy, batches, load_data, progress, save_image_grid, seeded
from torch import Tensor, nn

import plasticity_plugins
from plasticity_plugins.kernels.competition import (
    first_spike_times,
    k_winners,
    value_at_first_spike,
)
from plasticity_plugins.kernels.encoding import dog_preprocess, intensity_to_latency
from plasticity_plugins.rules import RSTDP, MozafariSTDP

FRAMEWORKS = ("spikingjelly", "snntorch")
STEPS = 15
THRESHOLDS = (15.0, 10.0, 1e-6)
MAPS_PER_CLASS = 20


def new_spikes(wave: Tensor) -> Tensor:
    """``[T, ...]`` spike waves -> the spikes that are new at each step (first spikes)."""
    return torch.cat([wave[:1], (wave[1:] - wave[:-1]).clamp(min=0)])


class MozafariNet(nn.Module):
    """The three-layer convolutional IF network of Mozafari et al. 2019 (module docstring).

    ``forward(x, depth)`` takes a whole sequence ``[T, B, 6, 28, 28]`` of NEW input spikes and
    returns the spike waves of layer ``depth`` (1, 2 or 3) ``[T, B, F, H, W]``.
    """

    def __init__(self, framework: str) -> None:
        super().__init__()
        self.framework = framework
        shapes = ((6, 30, 5, 2), (30, 250, 3, 1), (250, 200, 5, 0))
        if framework == "spikingjelly":
            from spikingjelly.activation_based import layer, neuron

            def conv(i: int, o: int, k: int, p: int) -> nn.Conv2d:
                return layer.Conv2d(i, o, k, padding=p, bias=False, step_mode="m")

            def cell(threshold: float) -> nn.Module:
                return neuron.IFNode(v_threshold=threshold, v_reset=None, step_mode="m")

        elif framework == "snntorch":
            import snntorch as snn

            def conv(i: int, o: int, k: int, p: int) -> nn.Conv2d:
                return nn.Conv2d(i, o, k, padding=p, bias=False)

            def cell(threshold: float) -> nn.Module:
                return snn.Leaky(
                    beta=1.0, threshold=threshold, reset_mechanism="none", init_hidden=True
                )

        else:
            raise ValueError(f"unknown framework {framework!r}; choose from {FRAMEWORKS}")
        # registration order = call order (attach pairs conv_i with sn_i)
        self.conv1, self.sn1 = conv(*shapes[0]), cell(THRESHOLDS[0])
        self.conv2, self.sn2 = conv(*shapes[1]), cell(THRESHOLDS[1])
        self.conv3, self.sn3 = conv(*shapes[2]), cell(THRESHOLDS[2])
        for c in (self.conv1, self.conv2, self.conv3):
            nn.init.normal_(c.weight, 0.8, 0.05)
        self.pools = (nn.MaxPool2d(2, 2), nn.MaxPool2d(3, 3, padding=1))
        self.potential3: Tensor | None = None

    def _layer(self, conv: nn.Module, cell: nn.Module, x: Tensor) -> Tensor:
        """IF layer on a sequence of new spikes -> its spike waves."""
        if self.framework == "spikingjelly":
            out = cell(conv(x))
        else:
            out = torch.stack([cell(conv(x_t)) for x_t in x])
        return torch.cummax(out, 0).values

    def reset(self) -> None:
        """Reset the neurons (for runs without an attached handle)."""
        for cell in (self.sn1, self.sn2, self.sn3):
            if self.framework == "spikingjelly":
                cell.reset()
            else:
                cell.reset_mem()

    def features(self, x: Tensor) -> Tensor:
        """Conv3's input: the pooled conv2 spike wave at the last step ``[B, 250, 5, 5]``."""
        return self.pools[1](self.forward(x, depth=2)[-1])

    def decision_layer(self, inputs: Tensor) -> Tensor:
        """Conv3 on :meth:`features` as ONE time step -> its spike waves ``[1, B, 200, 1, 1]``.

        SpykeTorch's ``fire`` without a threshold lets every map with a positive potential
        spike at the last step only, its potential being the kernel applied to the whole input
        wave; so the map with the highest final potential wins, and for R-STDP every input that
        fired at all is causal (same step), every silent one anti-causal. One step with a
        threshold just above 0 is exactly that. Sets :attr:`potential3`.
        """
        sequence = inputs.unsqueeze(0)
        with torch.no_grad():  # the 5x5 kernel covers the 5x5 input: one matrix product
            weight = self.conv3.weight
            potential = F.linear(inputs.flatten(1), weight.flatten(1))
            self.potential3 = potential.view(1, -1, weight.shape[0], 1, 1)
        # oneDNN re-lays out conv3's 1.25 M weights at every call (R-STDP changes them after
        # every image): 0.6-1.4 ms against 0.1-0.2 ms for PyTorch's im2col + matrix product
        onednn = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            return self._layer(self.conv3, self.sn3, sequence)
        finally:
            torch.backends.mkldnn.enabled = onednn

    def forward(self, x: Tensor, depth: int = 3) -> Tensor:
        """Spike waves of layer ``depth``; with depth 3 also sets :attr:`potential3`."""
        if depth == 3:
            return self.decision_layer(self.features(x))
        wave = self._layer(self.conv1, self.sn1, x)
        if depth == 1:
            return wave
        pooled = self.pools[0](wave.flatten(0, 1)).unflatten(0, wave.shape[:2])
        return self._layer(self.conv2, self.sn2, new_spikes(pooled))


def decide(waves: Tensor, potential: Tensor) -> Tensor:
    """Class per sample: the earliest, then most depolarised, conv3 map // 20 (-1: silent)."""
    time_ = first_spike_times(waves)
    at_spike = value_at_first_spike(potential, waves)
    winner = k_winners(time_, at_spike, 1)
    flat = winner.flatten(1)
    cls = flat.float().argmax(1) // (flat.shape[1] // 10)
    return torch.where(flat.any(1), cls, torch.full_like(cls, -1))


def encode(images: Tensor) -> Tensor:
    """``[B, 784]`` images -> ``[T, B, 6, 28, 28]`` new input spikes (DoG, latency)."""
    features = dog_preprocess(images.view(-1, 1, 28, 28))
    return new_spikes(intensity_to_latency(features, STEPS))


def classify(net: MozafariNet, inputs: Tensor) -> Tensor:
    """Class per sample from conv3's input (:meth:`MozafariNet.features`); -1: silent."""
    net.reset()
    with torch.no_grad():
        waves = net.decision_layer(inputs.float())
    assert net.potential3 is not None
    return decide(waves, net.potential3)


def train_decision_layer(
    net: MozafariNet,
    inputs: Tensor,
    labels: Tensor,
    epochs: int,
    batch: int = 1,
    adapt_every: int = 1000,
    seed: int = 0,
    show: bool = False,
) -> list[float]:
    """R-STDP on conv3 from its inputs ``[N, 250, 5, 5]``; the training accuracy per epoch.

    Reward +1 for the right class, -1 for a wrong one, 0 when silent; the rates adapted every
    ``adapt_every`` images from that block's hit and miss ratios.
    """
    rule = RSTDP(k=1, radius=None)
    optimizer = torch.optim.SGD([net.conv3.weight], lr=1.0)
    handle = plasticity_plugins.attach(net, {"conv3": rule}, optimizer=optimizer)
    epoch_accuracy: list[float] = []
    block_hits = block_misses = block_images = 0  # since the last rate adaptation
    for epoch in range(epochs):
        hits = 0
        order = seeded(seed + 10 + epoch)
        n_batches = math.ceil(len(inputs) / batch)
        for images, targets in progress(
            batches(inputs, labels, batch, order), show, n_batches, f"R-STDP {epoch + 1}"
        ):
            handle.reset()
            predicted = classify(net, images)
            correct = predicted == targets
            reward = torch.where(correct, 1.0, -1.0)
            rule.reward(torch.where(predicted < 0, 0.0, reward))
            optimizer.step()  # clamps to [0.2, 0.8]
            optimizer.zero_grad(set_to_none=True)
            n_correct = int(correct.sum())
            hits += n_correct
            block_hits += n_correct
            block_misses += int((~correct & (predicted >= 0)).sum())
            block_images += len(targets)
            if block_images >= adapt_every:
                rule.adapt_rates(
                    hit_ratio=block_hits / block_images, miss_ratio=block_misses / block_images
                )
                block_hits = block_misses = block_images = 0
        epoch_accuracy.append(100.0 * hits / len(inputs))
    handle.detach()
    return epoch_accuracy


def build_argparser() -> argparse.ArgumentParser:
    """The example's command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--framework", choices=FRAMEWORKS, default="spikingjelly")
    parser.add_argument("--train-size", type=int, default=4000, help="<= 4990")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--l1-images", type=int, default=1500, help="conv1 STDP images")
    parser.add_argument("--l2-images", type=int, default=3000, help="conv2 STDP images")
    parser.add_argument("--l3-epochs", type=int, default=80, help="conv3 R-STDP epochs")
    parser.add_argument(
        "--schedule-every", type=int, default=100, help="STDP rate doubling period (paper: 500)"
    )
    parser.add_argument(
        "--adapt-every", type=int, default=1000, help="R-STDP rate adaptation block (images)"
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--png", default="mozafari_conv1_features.png")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> float:
    """Train conv1, conv2 (STDP), conv3 (R-STDP); print the test accuracy; save the PNGs."""
    args = build_argparser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    show = not args.no_progress
    x_train, y_train, x_test, y_test = load_data(args.train_size, args.test_size, args.seed)
    net = MozafariNet(args.framework)
    batch = args.batch_size
    timings: dict[str, float] = {}

    def stdp_stage(depth: int, rule: MozafariSTDP, n_images: int) -> None:
        conv = (net.conv1, net.conv2)[depth - 1]
        optimizer = torch.optim.SGD([conv.weight], lr=1.0)
        handle = plasticity_plugins.attach(net, {f"conv{depth}": rule}, optimizer=optimizer)
        seen, start = 0, time.perf_counter()
        source = x_train.repeat(math.ceil(n_images / len(x_train)), 1)[:n_images]
        order = seeded(args.seed + depth)
        n_batches = math.ceil(n_images / batch)
        for images, _ in progress(
            batches(source, torch.zeros(len(source)), batch, order), show, n_batches, f"conv{depth}"
        ):
            rule.update_rates(seen)
            handle.reset()
            net.reset()  # the neurons without a rule too
            with torch.no_grad():
                net(encode(images), depth)
            optimizer.step()  # clamps to [0, 1]
            optimizer.zero_grad(set_to_none=True)
            seen += len(images)
        handle.detach()
        timings[f"conv{depth} STDP ({n_images} images)"] = time.perf_counter() - start

    every = args.schedule_every
    stdp_stage(1, MozafariSTDP(k=5, radius=3, pointwise=True, schedule_every=every), args.l1_images)
    stdp_stage(2, MozafariSTDP(k=8, radius=1, pointwise=True, schedule_every=every), args.l2_images)

    def conv3_inputs(images: Tensor, name: str) -> Tensor:
        """:meth:`MozafariNet.features` of ``images`` (conv1 and conv2 are frozen from here)."""
        start, chunks = time.perf_counter(), []
        for chunk, _ in progress(batches(images, torch.zeros(len(images)), 10), show, None, name):
            net.reset()
            with torch.no_grad():
                chunks.append(net.features(encode(chunk)).bool())
        timings[f"conv1-2 forward, {name} ({len(images)} images)"] = time.perf_counter() - start
        return torch.cat(chunks)

    train_inputs = conv3_inputs(x_train, "train")
    test_inputs = conv3_inputs(x_test, "test")
    start = time.perf_counter()
    epoch_accuracy = train_decision_layer(
        net, train_inputs, y_train, args.l3_epochs, batch, args.adapt_every, args.seed, show
    )
    timings[f"conv3 R-STDP ({args.l3_epochs} x {len(x_train)} images)"] = (
        time.perf_counter() - start
    )
    predicted = classify(net, test_inputs)
    test_accuracy = accuracy(predicted, y_test)
    silent = 100.0 * float((predicted < 0).double().mean())

    print(
        f"{args.framework}: Mozafari et al. 2019 (reduced), T={STEPS}, batch {batch}, "
        f"{len(x_train)} training images"
    )
    for name, seconds in timings.items():
        print(f"  {name}: {seconds:.1f} s")
    print(
        "  R-STDP training accuracy per epoch: " + ", ".join(f"{a:.1f} %" for a in epoch_accuracy)
    )
    print(f"  test accuracy: {test_accuracy:.2f} % on {len(x_test)} images ({silent:.1f} % silent)")

    kernels = net.conv1.weight.detach()  # [30, 6, 5, 5]: channels (ON, OFF) per DoG size
    on_minus_off = (kernels[:, 0::2] - kernels[:, 1::2]).sum(1)
    png = Path(args.png)
    kernel_png = png.with_name(png.stem + "_kernels" + png.suffix)
    save_image_grid(
        on_minus_off, kernel_png, "conv1 kernels: ON - OFF weights, summed over DoG sizes",
        columns=10, cmap="bwr", symmetric=True,
    )  # fmt: skip
    net.reset()
    with torch.no_grad():
        waves = net(encode(x_test[:1]), 1)[:, 0]  # [T, 30, 28, 28]
    first = first_spike_times(waves)
    maps = torch.where(torch.isfinite(first), STEPS - first, torch.zeros_like(first))
    save_image_grid(
        maps, png, f"conv1 feature maps of a test '{int(y_test[0])}' (bright: early spike)",
        columns=10, cmap="magma", labels=[f"f{i}" for i in range(maps.shape[0])],
    )  # fmt: skip
    print(f"  conv1 feature maps: {png}; conv1 kernels: {kernel_png}")
    return test_accuracy


if __name__ == "__main__":
    main()
