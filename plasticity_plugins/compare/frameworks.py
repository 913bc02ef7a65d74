"""The compared network in each framework and how each framework runs a sequence through it.

Every framework gets the same network: :func:`plasticity_plugins.networks.mlp`, Linear layers
with the matched LIF neuron (decay 0.5 per step, threshold 1, reset to zero, surrogate
``1 / (|x| + 1)^2``), initialised from the same seed, so the three compute the same function
(Norse in its own weight units, scaled by its input gain). Each framework runs it its native
way: snnTorch and Norse one time step per call (Norse with its explicit state), SpikingJelly in
multi-step mode, the whole sequence ``[T, B, N]`` in one call.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import require_framework
from ..networks import NORSE_INPUT_GAIN, Framework, mlp

#: ``forward(net, x [t, B, N], state) -> (output spikes [t, B, C], state)``.
Forward = Callable[[nn.Module, Tensor, Any], tuple[Tensor, Any]]


@dataclass(frozen=True)
class FrameworkKit:
    """How one framework builds and runs the compared network.

    Attributes:
        name: ``"snntorch"``, ``"spikingjelly"`` or ``"norse"``.
        distribution: the PyPI distribution whose version is reported.
        multistep: one call runs a whole sequence (SpikingJelly's ``step_mode="m"``).
        weight_scale: the framework's weights in units of the others' (Norse: ``1 / gain``);
            learning rates of scale-free optimizers (Adam) are multiplied by it so the three
            take the same steps.
        neuron: a short description of the neuron used.
    """

    name: Framework
    distribution: str
    multistep: bool
    weight_scale: float
    neuron: str

    def version(self) -> str | None:
        """The installed version of the framework, or None when it is not installed."""
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    def build(self, sizes: tuple[int, ...], device: torch.device | str = "cpu") -> nn.Module:
        """A fresh network ``sizes[0] -> ... -> sizes[-1]`` (seed torch first)."""
        return mlp(self.name, sizes, multistep=self.multistep, device=device)

    def reset(self, net: nn.Module) -> None:
        """Zero the network's neuron state (Norse keeps it outside the model: nothing to do)."""
        if self.name == "snntorch":
            for module in net.modules():
                if hasattr(module, "reset_mem") and hasattr(module, "init_hidden"):
                    module.reset_mem()  # type: ignore[operator]
        elif self.name == "spikingjelly":
            functional = require_framework(
                "spikingjelly.activation_based.functional", extra="spikingjelly"
            )
            functional.reset_net(net)

    def forward(self, net: nn.Module, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """Run the time steps of ``x`` (``[t, B, N]``): ``(output spikes [t, B, C], state)``.

        ``state`` is Norse's network state (None at the start of a sequence); the other
        frameworks keep their state in the modules and pass None through.
        """
        if self.multistep:
            return net(x), None
        outputs = []
        for x_t in x:
            if self.name == "norse":
                out, state = net(x_t, state)
            else:
                out = net(x_t)
            outputs.append(out)
        return torch.stack(outputs), state


KITS: dict[str, FrameworkKit] = {
    "snntorch": FrameworkKit(
        name="snntorch",
        distribution="snntorch",
        multistep=False,
        weight_scale=1.0,
        neuron="snn.Leaky(beta=0.5, reset zero, fast_sigmoid(1)), one step per call",
    ),
    "spikingjelly": FrameworkKit(
        name="spikingjelly",
        distribution="spikingjelly",
        multistep=True,
        weight_scale=1.0,
        neuron="neuron.LIFNode(tau=2, decay_input=False, SuperSpike(1)), step_mode='m'",
    ),
    "norse": FrameworkKit(
        name="norse",
        distribution="norse",
        multistep=False,
        weight_scale=1.0 / NORSE_INPUT_GAIN,
        neuron="LIFBoxCell(tau_mem_inv=500, dt=1e-3, 'super'), one step per call",
    ),
}
