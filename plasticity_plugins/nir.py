"""Export a model trained with a local rule to NIR with its framework's own exporter.

After :meth:`AttachHandle.detach` the model is the user's plain framework model again, so the
framework's own NIR exporter (https://neuroir.org) applies unchanged. :func:`export_nir` finds
the framework from the model's neuron modules and calls that exporter:

* snnTorch 1.0: ``snntorch.export_nir.export_to_nir(model, x, ignore_dims=[0])``; maps
  ``Leaky`` → ``LIF``, ``Synaptic`` → ``CubaLIF``, ``RLeaky`` / ``RSynaptic`` → a subgraph,
  ``nn.Linear`` → ``Affine`` (``Linear`` without bias), ``Conv2d``, ``AvgPool2d``, ``Flatten``.
* SpikingJelly 2.0: ``spikingjelly.activation_based.nir_exchange.export_to_nir``; maps
  ``IFNode`` → ``IF``, ``LIFNode`` / ``ParametricLIFNode`` → ``LIF``, ``CUBALIFNode`` →
  ``CubaLIF`` (hard reset only), ``Linear``, ``Conv1d`` / ``Conv2d``, ``AvgPool2d``,
  ``Flatten``.
* Norse 1.1: ``norse.torch.to_nir``; maps ``LIFBoxCell`` → ``LIF``, ``LIFCell`` → ``CubaLIF``,
  ``LIBoxCell`` → ``LI``, ``IAFCell`` → ``IF``, ``nn.Linear`` → ``Affine``, ``Conv2d``.

Two defects of the installed exporters are worked around, both visibly and only where present:

* snnTorch 1.0.0 writes a scalar ``beta`` / ``threshold`` (the usual case) as 0-d NIR
  parameters, which nir >= 1.0's ``infer_types()`` (called by the exporter) rejects
  (``type mismatch: 0.output: [[N]] -> 1.input: []``). The exporter therefore runs on a deep copy
  of the model in which a scalar ``alpha`` / ``beta`` / ``threshold`` of ``Leaky`` / ``Synaptic``
  is expanded to one equal value per neuron (the same dynamics); the model itself is untouched.
* Norse 1.1.0 writes ``tau = dt / tau_mem_inv`` (and ``dt / tau_syn_inv``), while NIR's ``tau``
  is in seconds (``tau_mem = 1 / tau_mem_inv``; Norse's own ``from_nir`` reads it that way, so
  its round trip changed ``tau_mem_inv`` by ``1 / dt``). Such values are rewritten as
  ``1 / tau_mem_inv``; an exporter that already writes that is left alone.

Not exported: snnTorch ``Alpha`` and ``Lapicque``, Norse ``LIF`` (the sequence module) and
``Lift(cell)`` (their exporters have no mapping for them; use the cell in a ``SequentialState``),
SpikingJelly soft reset (``v_reset=None``). Such models raise
:class:`~plasticity_plugins.errors.UnsupportedModuleError` naming the module. The exporters
capture the structure, weights and neuron constants; the neuron state, the surrogate gradient and
snnTorch's reset mechanism (NIR's ``LIF`` resets to ``v_reset``) are not part of NIR.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .attach import is_attached
from .errors import AttachError, PlasticityError, UnsupportedModuleError, require_framework

if TYPE_CHECKING:
    import nir

__all__ = ["NoExporterError", "export_nir", "exportable_neurons"]


class NoExporterError(PlasticityError, NotImplementedError):
    """The model's framework (at its installed version) has no NIR exporter."""


def _version(framework: str) -> str:
    try:
        return metadata.version(framework)
    except metadata.PackageNotFoundError:
        return "unknown version"


def exportable_neurons(framework: str) -> tuple[type[nn.Module], ...]:
    """The neuron classes that ``framework``'s own NIR exporter maps to a NIR node.

    Args:
        framework: ``"snntorch"``, ``"spikingjelly"`` or ``"norse"``.

    Returns:
        The classes (empty for a framework without an exporter).
    """
    if framework == "snntorch":
        snn = require_framework("snntorch")
        return (snn.Leaky, snn.Synaptic, snn.RLeaky, snn.RSynaptic)
    if framework == "spikingjelly":
        neuron = require_framework("spikingjelly.activation_based.neuron", extra="spikingjelly")
        return (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode, neuron.CUBALIFNode)
    if framework == "norse":
        norse = require_framework("norse.torch", extra="norse")
        return (norse.LIFCell, norse.LIFBoxCell, norse.LIBoxCell, norse.IAFCell)
    return ()


def _neurons(model: nn.Module) -> dict[str, list[tuple[str, nn.Module]]]:
    """The model's neurons of registered frameworks, by framework."""
    from .adapters import _framework_of, is_framework_neuron

    found: dict[str, list[tuple[str, nn.Module]]] = {}
    for name, module in model.named_modules():
        if is_framework_neuron(module):
            found.setdefault(_framework_of(module), []).append((name or "<model>", module))
    return found


def _snntorch(model: nn.Module, sample_input: Tensor, **kwargs: Any) -> Any:
    snn = require_framework("snntorch")
    exporter = require_framework("snntorch.export_nir", extra="snntorch").export_to_nir
    # snnTorch 1.0.0 writes scalar beta / threshold as 0-d NIR parameters, which nir's
    # infer_types() rejects: export a copy with one equal value per neuron instead.
    probe = copy.deepcopy(model)
    shapes: dict[str, torch.Size] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            shapes.setdefault(name, args[0].shape[1:])  # without the batch dimension

        return hook

    hooks = [
        module.register_forward_hook(record(name))
        for name, module in probe.named_modules()
        if isinstance(module, (snn.Leaky, snn.Synaptic))
    ]
    with torch.no_grad():
        probe(sample_input)
    for hook in hooks:
        hook.remove()
    model = copy.deepcopy(model)
    for name, shape in shapes.items():
        module = model.get_submodule(name)
        for attr in ("alpha", "beta", "threshold"):
            value = getattr(module, attr, None)
            if isinstance(value, Tensor) and value.dim() == 0:
                expanded = value.detach().expand(shape).clone()
                if attr in module._parameters:
                    module._parameters[attr] = nn.Parameter(expanded)
                else:
                    module._buffers[attr] = expanded
    kwargs.setdefault("ignore_dims", [0])  # the batch dimension of sample_input
    return exporter(model, sample_input, **kwargs)


def _spikingjelly(model: nn.Module, sample_input: Tensor, **kwargs: Any) -> Any:
    try:
        from spikingjelly.activation_based.nir_exchange import export_to_nir
    except ImportError as exc:
        raise NoExporterError(
            f"SpikingJelly {_version('spikingjelly')} has no NIR exporter "
            f"(spikingjelly.activation_based.nir_exchange, added in 2.0.0): {exc}"
        ) from exc
    return export_to_nir(model, sample_input, **kwargs)


def _norse(model: nn.Module, sample_input: Tensor, **kwargs: Any) -> Any:
    norse = require_framework("norse.torch", extra="norse")
    graph = norse.to_nir(model, sample_input, **kwargs)
    dt = kwargs.get("dt", 1e-3)
    pairs = {"tau": "tau_mem_inv", "tau_mem": "tau_mem_inv", "tau_syn": "tau_syn_inv"}
    for key, node in graph.nodes.items():
        try:
            module = model.get_submodule(key)
        except AttributeError:
            continue
        params = getattr(module, "p", None)
        for tau_name, inv_name in pairs.items():
            inv = getattr(params, inv_name, None)
            tau = getattr(node, tau_name, None)
            if inv is None or tau is None:
                continue
            inv = inv.detach().cpu().double()
            # Norse 1.1.0 writes dt / tau_inv; NIR's tau is 1 / tau_inv (seconds).
            if torch.allclose(torch.as_tensor(tau, dtype=torch.float64), dt / inv):
                setattr(node, tau_name, (1.0 / inv).to(torch.float32).numpy())
    return graph


_EXPORTERS: dict[str, Callable[..., Any]] = {
    "snntorch": _snntorch,
    "spikingjelly": _spikingjelly,
    "norse": _norse,
}


def export_nir(
    model: nn.Module, sample_input: Tensor, *, framework: str | None = None, **exporter_kwargs: Any
) -> nir.NIRGraph:
    """Export a detached model to a NIR graph with its framework's own exporter.

    The framework is found from the model's neuron modules (module docstring: which exporter,
    which neurons, the two worked-around defects). The graph holds the model's current weights,
    so a model trained with a local rule exports exactly what it learned.

    Args:
        model: a snnTorch, SpikingJelly or Norse model with no rule attached (call
            ``handle.detach()`` first). Norse models: a ``SequentialState`` of cells.
        sample_input: one time step with a batch dimension, e.g. ``torch.zeros(1, 784)``
            (SpikingJelly ``step_mode="m"``: ``[T, B, ...]``); the exporters run the model on it
            to trace the graph (snnTorch: a copy of it; SpikingJelly restores the neuron state
            afterwards; Norse cells keep none).
        framework: ``"snntorch"``, ``"spikingjelly"`` or ``"norse"``; default: found from the
            model's neurons.
        **exporter_kwargs: passed on to the framework's exporter (e.g. ``dt`` for SpikingJelly
            and Norse).

    Returns:
        The ``nir.NIRGraph``; its nodes are named after the model's modules.

    Raises:
        AttachError: a rule is still attached to ``model``.
        UnsupportedModuleError: no neuron of a known framework (pass ``framework=``), neurons of
            several frameworks, or a neuron the framework's exporter does not map.
        NoExporterError: the framework (at its installed version) has no NIR exporter.
        MissingFrameworkError: ``nir`` / ``nirtorch`` or the framework is not installed.

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.nir import export_nir
        >>> from plasticity_plugins.rules import STDP
        >>> net = torch.nn.Sequential(torch.nn.Linear(6, 3), snn.Leaky(beta=0.9, init_hidden=True))
        >>> handle = plasticity_plugins.attach(net, STDP())
        >>> handle.detach()  # trained or not: export the plain model
        >>> graph = export_nir(net, torch.zeros(1, 6))
        >>> sorted(graph.nodes), type(graph.nodes["1"]).__name__
        (['0', '1', 'input', 'output'], 'LIF')
        >>> bool((graph.nodes["0"].weight == net[0].weight.detach().numpy()).all())
        True
    """
    if is_attached(model):
        raise AttachError(
            f"{type(model).__name__} still has a local rule attached; call handle.detach() "
            "before export_nir() (the attached hooks and wrappers are not part of the model)"
        )
    neurons = _neurons(model)
    if framework is None:
        if len(neurons) != 1:
            found = ", ".join(sorted(neurons)) or "none"
            raise UnsupportedModuleError(
                f"export_nir needs the neurons of exactly one framework (found: {found}); "
                f"pass framework= one of {', '.join(_EXPORTERS)}"
            )
        (framework,) = neurons
    require_framework("nir")
    require_framework("nirtorch", extra="nir")
    exporter = _EXPORTERS.get(framework)
    if exporter is None:
        raise NoExporterError(
            f"{framework} {_version(framework)} has no NIR exporter known to plasticity_plugins; "
            f"supported: {', '.join(_EXPORTERS)}"
        )
    mapped = exportable_neurons(framework)
    for name, module in neurons.get(framework, []):
        if not isinstance(module, mapped):
            raise UnsupportedModuleError(
                f"{name} ({type(module).__name__}): {framework} {_version(framework)}'s NIR "
                f"exporter does not map this neuron; it maps "
                f"{', '.join(t.__name__ for t in mapped)}"
            )
    return exporter(model, sample_input, **exporter_kwargs)
