"""Swap BPTT for a local rule in a Norse model: S-TLLR and DECOLLE through ``attach``.

The model is a Norse MLP written the Norse way: ``SequentialState(Linear, LIFCell, Linear,
LIFCell)`` 784-256-10 (current-based LIF with Norse's default parameters and SuperSpike
surrogate), stepped with explicit state passing, ``out, state = net(x_t, state)``, and trained
on the rate-coded offline MNIST subset with a cross-entropy loss on the output spikes of every
step. It is trained three times from the same initial weights:

* BPTT (the "before" loop, :func:`train_bptt`): the loss of all T steps, one
  ``loss.backward()`` through time; memory grows with T;
* S-TLLR (:func:`train_stllr`): ``handle.backward(loss_t)`` at every step: the step's error
  meets the rule's eligibility traces; the adapter detaches the state passed between steps;
* DECOLLE (:func:`train_decolle`): ``handle.backward(target=y)`` at every step: each layer
  learns from its own fixed random readout; test predictions per layer come from
  ``handle.predictions()``.

Run (about a few minutes on 2 cores; ``--help`` for the options)::

    python examples/swap_bptt_norse.py --epochs 2 --steps 25
"""

from __future__ import annotations

import itertools

import norse.torch as norse
import torch
import torch.nn.functional as F
from _common import Example, Settings, main
from torch import Tensor, nn

from plasticity_plugins import AttachHandle


def build_model(hidden: tuple[int, ...] = (256,)) -> norse.SequentialState:
    """784 -> hidden... -> 10 ``nn.Linear`` + ``LIFCell`` in a ``SequentialState``."""
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise((784, *hidden, 10)):
        layers += [nn.Linear(n_in, n_out), norse.LIFCell()]
    return norse.SequentialState(*layers)


# ------------------------------------------------------------ before: BPTT -----------------
def train_bptt(net: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> None:
    """One batch with BPTT. ``x``: ``[T, B, 784]`` spikes, ``y``: ``[B]`` labels."""
    optimizer.zero_grad()
    state = None
    loss = torch.zeros(())
    for x_t in x:
        out, state = net(x_t, state)
        loss = loss + F.cross_entropy(out, y)
    loss.backward()
    optimizer.step()


# ------------------------------------------------------------ after: a local rule ----------
def train_stllr(
    net: nn.Module, handle: AttachHandle, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer
) -> None:
    """One batch with S-TLLR: ``handle = attach(net, STLLR(...))`` was called once."""
    handle.reset()
    optimizer.zero_grad()
    state = None
    for x_t in x:
        out, state = net(x_t, state)
        handle.backward(F.cross_entropy(out, y))
    optimizer.step()


def train_decolle(
    net: nn.Module, handle: AttachHandle, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer
) -> None:
    """One batch with DECOLLE: ``handle = attach(net, DECOLLE(num_classes=10))``."""
    handle.reset()
    optimizer.zero_grad()
    state = None
    for x_t in x:
        _, state = net(x_t, state)
        handle.backward(target=y)
    optimizer.step()


def spike_counts(net: nn.Module, x: Tensor) -> Tensor:
    """Output spikes summed over the test sequence ``x``: ``[B, 10]``."""
    state = None
    counts = torch.zeros(())
    for x_t in x:
        out, state = net(x_t, state)
        counts = counts + out
    return counts


EXAMPLE = Example(
    framework="norse",
    build_model=build_model,
    train_bptt=train_bptt,
    train_stllr=train_stllr,
    train_decolle=train_decolle,
    spike_counts=spike_counts,
    defaults=Settings(),
)

if __name__ == "__main__":
    main(EXAMPLE, __doc__.split("\n")[0])
