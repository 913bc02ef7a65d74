"""The same small networks written natively in each framework, with matched neurons.

The matched neuron is a leaky integrate-and-fire neuron with membrane decay 0.5 per step,
threshold 1, reset to zero and surrogate ``1 / (|x| + 1)^2``:

* snnTorch ``Leaky(beta=0.5, reset_mechanism="zero", spike_grad=fast_sigmoid(slope=1))``,
* SpikingJelly ``LIFNode(tau=2, decay_input=False, v_reset=0, surrogate_function=SuperSpike(1))``,
* Norse ``LIFBoxCell`` with ``tau_mem_inv=500``, ``dt=1e-3``, ``method="super"``.

Norse scales its input by ``dt * tau_mem_inv = 0.5``, so its weights are the others' divided by
:data:`NORSE_INPUT_GAIN` (and a weight update ``dw`` in the others' units is ``dw / gain`` in
Norse's). SpikingJelly fires at ``u >= 1``, the others at ``u > 1``: with real-valued weights
equality has probability zero, so the three produce the same spikes.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import Tensor, nn

from .errors import require_framework

Framework = Literal["snntorch", "spikingjelly", "norse"]
FRAMEWORKS: tuple[Framework, ...] = ("snntorch", "spikingjelly", "norse")
NORSE_INPUT_GAIN = 0.5


def matched_lif(
    framework: Framework,
    multistep: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """The matched LIF neuron (module docstring) of ``framework``.

    Args:
        framework: ``"snntorch"``, ``"spikingjelly"`` or ``"norse"``.
        multistep: SpikingJelly only: ``step_mode="m"`` (input ``[T, B, ...]`` per call).
        dtype: dtype of the neuron's parameters (Norse keeps them outside ``.to()``).
        device: their device.
    """
    if framework == "snntorch":
        snn = require_framework("snntorch")
        surrogate = require_framework("snntorch.surrogate", extra="snntorch")
        return snn.Leaky(
            beta=0.5,
            threshold=1.0,
            reset_mechanism="zero",
            spike_grad=surrogate.fast_sigmoid(slope=1),
            init_hidden=True,
        )
    if framework == "spikingjelly":
        sj = require_framework("spikingjelly.activation_based.neuron", extra="spikingjelly")
        sg = require_framework("spikingjelly.activation_based.surrogate", extra="spikingjelly")
        return sj.LIFNode(
            tau=2.0,
            decay_input=False,
            v_threshold=1.0,
            v_reset=0.0,
            surrogate_function=sg.SuperSpike(alpha=1.0),
            step_mode="m" if multistep else "s",
        )
    if framework == "norse":
        norse = require_framework("norse.torch", extra="norse")

        def constant(value: float) -> Tensor:
            return torch.as_tensor(value, dtype=dtype, device=device)

        params = norse.LIFBoxParameters(
            tau_mem_inv=constant(500.0),
            v_leak=constant(0.0),
            v_th=constant(1.0),
            v_reset=constant(0.0),
            method="super",
            alpha=constant(1.0),
        )
        return norse.LIFBoxCell(p=params, dt=1e-3)
    raise ValueError(f"unknown framework {framework!r}; choose from {', '.join(FRAMEWORKS)}")


def single_layer(
    framework: Framework, weight: Tensor, multistep: bool = False
) -> tuple[nn.Module, nn.Linear]:
    """``Linear(weight, no bias) -> matched LIF`` in ``framework``'s own container.

    snnTorch and SpikingJelly use ``nn.Sequential``; Norse uses its ``SequentialState`` (call it
    as ``out, state = net(x, state)``). ``weight`` is in snnTorch units; Norse's copy is divided
    by :data:`NORSE_INPUT_GAIN`.

    Returns:
        ``(network, its Linear layer)``.
    """
    n_out, n_in = weight.shape
    if framework == "spikingjelly":
        layer = require_framework("spikingjelly.activation_based.layer", extra="spikingjelly")
        linear: nn.Linear = layer.Linear(
            n_in, n_out, bias=False, step_mode="m" if multistep else "s"
        )
    else:
        linear = nn.Linear(n_in, n_out, bias=False)
    scale = 1 / NORSE_INPUT_GAIN if framework == "norse" else 1.0
    with torch.no_grad():
        linear.weight.copy_(weight * scale)
    linear.to(weight.device, weight.dtype)
    neuron = matched_lif(framework, multistep, weight.dtype, weight.device)
    neuron.to(weight.device, weight.dtype)
    if framework == "norse":
        norse = require_framework("norse.torch", extra="norse")
        return norse.SequentialState(linear, neuron), linear
    return nn.Sequential(linear, neuron), linear


def mlp(
    framework: Framework,
    sizes: tuple[int, ...],
    multistep: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """``(Linear -> matched LIF)`` per layer, ``sizes = (inputs, hidden..., outputs)``.

    The Linear layers keep torch's default initialisation, so the same ``torch.manual_seed``
    gives the same network in the three frameworks; Norse's weights and biases are divided by
    :data:`NORSE_INPUT_GAIN` (its neuron multiplies its input by the gain). Containers as in
    :func:`single_layer`; SpikingJelly's layers are ``layer.Linear`` in the neurons' step mode.

    Example:
        >>> net = mlp("snntorch", (784, 32, 10))
        >>> [type(m).__name__ for m in net]
        ['Linear', 'Leaky', 'Linear', 'Leaky']
    """
    if len(sizes) < 2 or any(size < 1 for size in sizes):
        raise ValueError(f"mlp: sizes must be at least (inputs, outputs), all >= 1, got {sizes}")
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        if framework == "spikingjelly":
            layer = require_framework("spikingjelly.activation_based.layer", extra="spikingjelly")
            linear: nn.Linear = layer.Linear(n_in, n_out, step_mode="m" if multistep else "s")
        else:
            linear = nn.Linear(n_in, n_out)
        if framework == "norse":
            with torch.no_grad():
                for parameter in linear.parameters():
                    parameter.div_(NORSE_INPUT_GAIN)
        layers += [linear.to(device, dtype), matched_lif(framework, multistep, dtype, device)]
    for module in layers:
        module.to(device, dtype)
    if framework == "norse":
        norse = require_framework("norse.torch", extra="norse")
        return norse.SequentialState(*layers)
    return nn.Sequential(*layers)
