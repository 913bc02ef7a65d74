"""Swap BPTT for a local rule in a SpikingJelly multi-step model: S-TLLR and DECOLLE.

The model is SpikingJelly's tutorial MLP, ``layer.Linear`` + ``neuron.LIFNode`` (tau 2, ATan
surrogate) 784-256-10, in multi-step mode (``step_mode="m"``: one call runs the whole
``[T, B, 784]`` sequence), trained on the rate-coded offline MNIST subset with the tutorial's
loss, the mean squared error between the output firing rate and the one-hot label. It is trained
three times from the same initial weights:

* BPTT (the "before" loop, :func:`train_bptt`): ``loss.backward()`` through the T steps of the
  multi-step call, then ``functional.reset_net``; memory grows with T;
* S-TLLR (:func:`train_stllr`): the same forward and loss, ``handle.backward(loss)`` once per
  sequence: the rule pairs each step's share of the error, ``dLoss/ds[t]``, with that step's
  eligibility traces; the graph is cut between steps, so memory does not grow with T beyond the
  sequence's own activations;
* DECOLLE (:func:`train_decolle`): ``handle.backward(target=y)`` once per sequence: each layer
  learns from its own fixed random readout at every step; test predictions per layer come from
  ``handle.predictions()``.

Run (about a few minutes on 2 cores; ``--help`` for the options)::

    python examples/swap_bptt_spikingjelly.py --epochs 2 --steps 25
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from _common import Example, Settings, main
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import Tensor, nn

from plasticity_plugins import AttachHandle


def build_model(hidden: tuple[int, ...] = (256,)) -> nn.Sequential:
    """784 -> hidden... -> 10 ``layer.Linear`` + ``LIFNode(tau=2)``, multi-step mode."""
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise((784, *hidden, 10)):
        layers += [
            layer.Linear(n_in, n_out),
            neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan()),
        ]
    net = nn.Sequential(*layers)
    functional.set_step_mode(net, "m")
    return net


def rate_loss(out: Tensor, y: Tensor) -> Tensor:
    """The tutorial's loss: MSE between the firing rate over T and the one-hot label."""
    return F.mse_loss(out.mean(0), F.one_hot(y, 10).to(out.dtype))


# ------------------------------------------------------------ before: BPTT -----------------
def train_bptt(net: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> None:
    """One batch with BPTT. ``x``: ``[T, B, 784]`` spikes, ``y``: ``[B]`` labels."""
    optimizer.zero_grad()
    loss = rate_loss(net(x), y)
    loss.backward()
    optimizer.step()
    functional.reset_net(net)


# ------------------------------------------------------------ after: a local rule ----------
def train_stllr(
    net: nn.Module, handle: AttachHandle, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer
) -> None:
    """One batch with S-TLLR: ``handle = attach(net, STLLR(...))`` was called once."""
    handle.reset()
    optimizer.zero_grad()
    handle.backward(rate_loss(net(x), y))
    optimizer.step()


def train_decolle(
    net: nn.Module, handle: AttachHandle, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer
) -> None:
    """One batch with DECOLLE: ``handle = attach(net, DECOLLE(num_classes=10))``."""
    handle.reset()
    optimizer.zero_grad()
    net(x)
    handle.backward(target=y)
    optimizer.step()


def spike_counts(net: nn.Module, x: Tensor) -> Tensor:
    """Output spikes summed over the test sequence ``x``: ``[B, 10]``."""
    functional.reset_net(net)
    return net(x).sum(0)


EXAMPLE = Example(
    framework="spikingjelly",
    build_model=build_model,
    train_bptt=train_bptt,
    train_stllr=train_stllr,
    train_decolle=train_decolle,
    spike_counts=spike_counts,
    defaults=Settings(),
)

if __name__ == "__main__":
    main(EXAMPLE, __doc__.split("\n")[0])
