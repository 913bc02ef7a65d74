"""Framework adapters, found through the ``plasticity_plugins.adapters`` entry-point group.

Each entry point is named after a framework's top-level import name (``snntorch``,
``spikingjelly``, ``norse``) and points to a sequence of :class:`NeuronAdapter` subclasses. A
fourth framework is added by another package declaring, in its own ``pyproject.toml``::

    [project.entry-points."plasticity_plugins.adapters"]
    myframework = "my_package.adapter:ADAPTERS"

An adapter module is imported only when a module of its framework is met, so the core never
imports a framework it does not need.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from torch import nn

from .base import NeuronAdapter, NeuronObservation, NeuronSpec, surrogate_by_autograd

GROUP = "plasticity_plugins.adapters"

__all__ = [
    "GROUP",
    "NeuronAdapter",
    "NeuronObservation",
    "NeuronSpec",
    "adapter_for",
    "available_frameworks",
    "load_adapters",
    "surrogate_by_autograd",
]


def available_frameworks() -> list[str]:
    """Names of the frameworks with a registered adapter (installed or not)."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


@cache
def load_adapters(framework: str) -> tuple[type[NeuronAdapter], ...]:
    """The adapter classes registered for ``framework`` (imports the framework).

    Raises:
        MissingFrameworkError: the framework is not installed (names the extra).
        UnsupportedFrameworkVersionError: its version is outside the supported range.
    """
    found = [ep for ep in entry_points(group=GROUP) if ep.name == framework]
    if not found:
        return ()
    return tuple(cls for ep in found for cls in ep.load())


def _framework_of(module: nn.Module) -> str:
    return type(module).__module__.split(".", 1)[0]


def adapter_for(module: nn.Module) -> type[NeuronAdapter] | None:
    """The adapter class for ``module``, or None when ``module`` is no supported neuron."""
    framework = _framework_of(module)
    if framework not in available_frameworks():
        return None
    for cls in load_adapters(framework):
        if cls.handles(module):
            return cls
    return None


def supported_neurons(framework: str) -> list[str]:
    """Class names of the neurons the adapters of ``framework`` support."""
    return sorted(t.__name__ for cls in load_adapters(framework) for t in cls.neuron_types)


def is_framework_neuron(module: nn.Module) -> bool:
    """Whether ``module`` is a neuron of a registered framework, supported or not.

    Lets attach() give a clear error for a neuron no adapter supports instead of skipping it.
    """
    framework = _framework_of(module)
    if framework not in available_frameworks():
        return False
    return any(cls.is_neuron(module) for cls in load_adapters(framework))
