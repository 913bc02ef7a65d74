"""Swap BPTT for a local rule in a snnTorch model: S-TLLR and DECOLLE through ``attach``.

The model is snnTorch's tutorial MLP, 784-256-10 ``Leaky`` neurons in an ``nn.Sequential`` with
``init_hidden=True``, driven one time step per call and trained on the rate-coded offline MNIST
subset with a cross-entropy loss on the output spikes of every step. It is trained three times
from the same initial weights:

* BPTT (the "before" loop, :func:`train_bptt`): the loss of all T steps, one
  ``loss.backward()`` through time; memory grows with T;
* S-TLLR (:func:`train_stllr`): ``handle.backward(loss_t)`` at every step, where the BPTT loop
  accumulates the loss: the step's error meets the rule's eligibility traces, the step's graph
  is freed right away;
* DECOLLE (:func:`train_decolle`): ``handle.backward(target=y)`` at every step: each layer
  learns from its own fixed random readout; test predictions per layer come from
  ``handle.predictions()``.

Run (about a few minutes on 2 cores; ``--help`` for the options)::

    python examples/swap_bptt_snntorch.py --epochs 2 --steps 25
"""

from __future__ import annotations

import itertools

import snntorch as snn
import torch
import torch.nn.functional as F
from _common import Example, Settings, main
from snntorch import surrogate
from torch import Tensor, nn

from plasticity_plugins import AttachHandle


def build_model(hidden: tuple[int, ...] = (256,)) -> nn.Sequential:
    """784 -> hidden... -> 10 ``Linear`` + ``Leaky`` (beta 0.9, fast-sigmoid surrogate)."""
    spike_grad = surrogate.fast_sigmoid(slope=25)
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise((784, *hidden, 10)):
        layers += [
            nn.Linear(n_in, n_out),
            snn.Leaky(beta=0.9, spike_grad=spike_grad, init_hidden=True),
        ]
    return nn.Sequential(*layers)


def reset_neurons(net: nn.Module) -> None:
    """Zero this network's membranes. (``snntorch.utils.reset`` resets every Leaky ever created,
    in any network, and fails when one of them has not run yet.)"""
    for module in net.modules():
        if isinstance(module, snn.Leaky):
            module.reset_mem()


# ------------------------------------------------------------ before: BPTT -----------------
def train_bptt(net: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> None:
    """One batch with BPTT. ``x``: ``[T, B, 784]`` spikes, ``y``: ``[B]`` labels."""
    reset_neurons(net)
    optimizer.zero_grad()
    loss = torch.zeros(())
    for x_t in x:
        loss = loss + F.cross_entropy(net(x_t), y)
    loss.backward()
    optimizer.step()


# ------------------------------------------------------------ after: a local rule ----------
def train_stllr(
    net: nn.Module, handle: AttachHandle, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer
) -> None:
    """One batch with S-TLLR: ``handle = attach(net, STLLR(...))`` was called once."""
    handle.reset()
    optimizer.zero_grad()
    for x_t in x:
        handle.backward(F.cross_entropy(net(x_t), y))
    optimizer.step()


def train_decolle(
    net: nn.Module, handle: AttachHandle, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer
) -> None:
    """One batch with DECOLLE: ``handle = attach(net, DECOLLE(num_classes=10))``."""
    handle.reset()
    optimizer.zero_grad()
    for x_t in x:
        net(x_t)
        handle.backward(target=y)
    optimizer.step()


def spike_counts(net: nn.Module, x: Tensor) -> Tensor:
    """Output spikes summed over the test sequence ``x``: ``[B, 10]``."""
    reset_neurons(net)
    return torch.stack([net(x_t) for x_t in x]).sum(0)


EXAMPLE = Example(
    framework="snntorch",
    build_model=build_model,
    train_bptt=train_bptt,
    train_stllr=train_stllr,
    train_decolle=train_decolle,
    spike_counts=spike_counts,
    defaults=Settings(),
)

if __name__ == "__main__":
    main(EXAMPLE, __doc__.split("\n")[0])
