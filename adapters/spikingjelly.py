"""SpikingJelly (``spikingjelly.activation_based``, 2.x) neuron adapters.

Supported: :class:`~spikingjelly.activation_based.neuron.IFNode`,
:class:`~spikingjelly.activation_based.neuron.LIFNode` (``decay_input`` True and False) and
:class:`~spikingjelly.activation_based.neuron.ParametricLIFNode`, in step mode ``"s"`` (one call is
one step, input ``[B, ...]``) and ``"m"`` (one call is a sequence, input ``[T, B, ...]``), with
soft reset (``v_reset=None``) or hard reset (``v_reset`` a float), with or without
``detach_reset``, and any surrogate function whose forward pass is SpikingJelly's Heaviside step.

How the observation is built (all of it from the state captured before the call):

* ``s`` is the module's output (after the spike mask), detached.
* ``u`` (pre-reset charge, what SpikingJelly compared with the threshold) is rebuilt lazily with
  SpikingJelly's own charge arithmetic (:func:`spikingjelly.activation_based.functional.lif_charge`
  for LIF, ``v + x`` for IF, ``v + (x - (v - v_reset)) * sigmoid(w)`` for PLIF, exactly as its Torch
  reference and CPU kernels write them) from the membrane ``v`` held before the call, materialised
  with the module's own :meth:`materialize_states` (``v`` is the float reset value before the first
  step). In step mode ``"m"`` the charge needs the membrane before every step: it is taken from
  the post-reset ``v_seq`` when the module stores it (one vectorised charge, same arithmetic),
  else the steps are replayed with
  :func:`spikingjelly.activation_based.functional.voltage_reset` and the module's own (unmasked)
  spikes. The adapter switches ``store_v_seq`` on from the call after a rule first reads ``u``
  in step mode ``"m"`` (rules that read only ``s``, like STDP, pay nothing for it; the switch is
  undone by ``uninstall()`` and when the module goes back to step mode ``"s"``, where
  ``store_v_seq`` would append to ``v_seq`` at every step).
* ``psi`` is a closed form for the seven surrogates SpikingJelly fuses (``Sigmoid``, ``ATan``,
  ``PiecewiseQuadratic``, ``PiecewiseExp``, ``SoftSign``, ``SuperSpike`` = ``alpha / (|x| + 1)^2``,
  ``Erf``; the same formulas as its fused kernels' backward), else autograd through the module's
  own surrogate function. SpikingJelly's fused path never calls the surrogate module, so nothing
  here hooks it.

SpikingJelly fires at ``u >= threshold`` (``fire_on_equal=True``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from plasticity_plugins.errors import (
    InputError,
    UnsupportedModuleError,
    check_version,
    require_framework,
)

from .base import NeuronAdapter, NeuronObservation, NeuronSpec, surrogate_by_autograd

fw = require_framework("spikingjelly")

from importlib.metadata import version as _dist_version  # noqa: E402

check_version("spikingjelly", _dist_version("spikingjelly"), "2.0", "3")

from spikingjelly.activation_based import functional as _sj_functional  # noqa: E402
from spikingjelly.activation_based import neuron as _sj_neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as _sj_surrogate  # noqa: E402

__all__ = [
    "ADAPTERS",
    "SpikingJellyIFAdapter",
    "SpikingJellyLIFAdapter",
    "SpikingJellyNeuronAdapter",
    "SpikingJellyPLIFAdapter",
]


def _sigmoid_grad(x: Tensor, a: float) -> Tensor:
    sg = torch.sigmoid(a * x)
    return a * sg * (1.0 - sg)


#: Surrogates that SpikingJelly 2.x runs through its fused kernels (never calling the module).
#: Their derivatives, ``x = u - threshold``, exactly as the framework defines them.
_CLOSED_FORMS: dict[type, Callable[[Tensor, float], Tensor]] = {
    _sj_surrogate.Sigmoid: _sigmoid_grad,
    _sj_surrogate.ATan: lambda x, a: (a / 2.0) / (1.0 + (math.pi / 2.0 * a * x) ** 2),
    _sj_surrogate.PiecewiseQuadratic: lambda x, a: (a - a * a * x.abs()).clamp_min(0.0),
    _sj_surrogate.PiecewiseExp: lambda x, a: (a / 2.0) * torch.exp(-a * x.abs()),
    _sj_surrogate.SoftSign: lambda x, a: 1.0 / (2.0 * a * (1.0 / a + x.abs()) ** 2),
    _sj_surrogate.SuperSpike: lambda x, a: a / (x.abs() + 1.0) ** 2,
    _sj_surrogate.Erf: lambda x, a: (a / math.sqrt(math.pi)) * torch.exp(-((a * x) ** 2)),
}

_NEURON_BASES: tuple[type, ...] = tuple(
    getattr(_sj_neuron, name)
    for name in ("BaseNode", "SimpleBaseNode", "NonSpikingBaseNode")
    if hasattr(_sj_neuron, name)
)


class _UnfusedSurrogate(nn.Module):
    """Forwards to a SpikingJelly surrogate while hiding it from the fused-kernel dispatch.

    SpikingJelly's fused kernels take the threshold as a Python float; its Torch reference path
    (chosen when the surrogate is not one of its built-ins) accepts a tensor threshold and calls
    the surrogate module, which gives the same spikes and the same gradients. The adapter swaps
    this wrapper in only during a call with a per-neuron threshold offset.
    """

    _inner: nn.Module

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_inner", inner)  # not registered: the module tree is unchanged

    def forward(self, x: Tensor) -> Tensor:
        """The wrapped surrogate's output (its spiking function)."""
        out: Tensor = self._inner(x)
        return out


class _Call:
    """What the forward pre-hook captured for one call (used lazily after it)."""

    __slots__ = ("charge_params", "multi", "surrogate", "threshold", "v_prev", "x")

    def __init__(
        self,
        x: Tensor,
        v_prev: Any,
        threshold: float | Tensor,
        surrogate: nn.Module,
        multi: bool,
        charge_params: tuple[Any, ...],
    ) -> None:
        self.x = x
        self.v_prev = v_prev
        self.threshold = threshold
        self.surrogate = surrogate
        self.multi = multi
        self.charge_params = charge_params


class SpikingJellyNeuronAdapter(NeuronAdapter):
    """Shared implementation for SpikingJelly ``BaseNode`` neurons (see the module docstring).

    Threshold offset: ``v_threshold`` is a float attribute; while an offset is set, the adapter
    sets ``v_threshold`` to the tensor ``v_threshold + offset`` for the duration of each call
    (restored right after it, also when the call raises) and routes that call through
    SpikingJelly's Torch reference implementation (identical arithmetic; its fused kernels
    accept only a float threshold). The offset thus takes effect in the neuron's own firing
    decision and, with soft reset, in the amount subtracted after a spike.

    Spike mask: multiplies the module's output; the neuron's own reset follows its unmasked
    spikes; ``s`` in the observation is the masked output.

    ``detach_state``: the memory ``v`` is replaced by a detached alias before each call.

    ``store_v_seq``: switched on in step mode ``"m"`` once a rule has read ``u`` (see the module
    docstring); the module then keeps the last call's ``v_seq`` (``[T, B, ...]``) as SpikingJelly
    does for ``store_v_seq=True``. Restored by :meth:`uninstall`.
    """

    framework: ClassVar[str] = "spikingjelly"

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        if type(module) not in self.neuron_types:
            supported = ", ".join(t.__name__ for t in self.neuron_types)
            raise UnsupportedModuleError(
                f"{type(module).__name__} is not handled by {type(self).__name__}; "
                f"it supports exactly: {supported} (subclasses are not supported)."
            )
        self._validate()
        self._call: _Call | None = None
        self._swapped: tuple[Any, nn.Module] | None = None
        self._membrane_read = False  # a rule read u in step mode "m": keep v_seq from then on
        self._left: Any = None  # the membrane v the last call left
        self._call_restarted = False
        self._enabled_v_seq = False  # the adapter switched store_v_seq on (undone on uninstall)

    # ------------------------------------------------------------------ validation

    def _unsupported(self, option: str, value: object, supported: str) -> UnsupportedModuleError:
        return UnsupportedModuleError(
            f"spikingjelly.{type(self.module).__name__}: {option}={value!r} is not supported; "
            f"supported: {supported}."
        )

    def _validate(self) -> None:
        """Raise :class:`UnsupportedModuleError` for a configuration the adapter cannot model."""
        m: Any = self.module
        thr = m.v_threshold
        if isinstance(thr, bool) or not isinstance(thr, (float, int)):
            raise self._unsupported("v_threshold", thr, "a Python float")
        if m.v_reset is not None and (
            isinstance(m.v_reset, bool) or not isinstance(m.v_reset, (float, int))
        ):
            raise self._unsupported("v_reset", m.v_reset, "None (soft reset) or a Python float")
        if m.step_mode not in ("s", "m"):
            raise self._unsupported("step_mode", m.step_mode, "'s' or 'm'")
        backend = getattr(m, "backend", "torch")
        if backend != "torch":
            raise self._unsupported("backend", backend, "'torch'")
        if getattr(m, "_neuron_precision", None) is not None:
            raise self._unsupported(
                "neuron precision (spikingjelly.activation_based.precision)",
                m._neuron_precision,
                "the default precision (None): the membrane must be rebuilt exactly",
            )
        sg = m.surrogate_function
        if not callable(sg):
            raise self._unsupported("surrogate_function", sg, "a SpikingJelly surrogate module")
        if not getattr(sg, "spiking", True):
            raise self._unsupported(
                "surrogate_function.spiking",
                False,
                "spiking=True (with spiking=False the output is not a spike: s != H(u - thr))",
            )
        self._validate_family()

    def _validate_family(self) -> None:
        """Neuron-specific checks (overridden)."""

    # ------------------------------------------------------------------ framework specifics

    def _charge_params(self) -> tuple[Any, ...]:
        """Parameters of the charge equation, captured before each call."""
        return ()

    def _charge(self, x: Tensor, v: Tensor, params: tuple[Any, ...]) -> Tensor:
        """Pre-reset membrane from input ``x`` and state ``v`` (SpikingJelly's arithmetic)."""
        raise NotImplementedError

    def _decays(self) -> tuple[float, float]:
        """``(mem_decay, input_gain)`` of the spec."""
        raise NotImplementedError

    # ------------------------------------------------------------------ contract

    @classmethod
    def is_neuron(cls, module: nn.Module) -> bool:
        """Any SpikingJelly neuron (``BaseNode`` family or a module of its ``neuron`` package)."""
        return isinstance(module, _NEURON_BASES) or type(module).__module__.startswith(
            "spikingjelly.activation_based.neuron"
        )

    @property
    def spec(self) -> NeuronSpec:
        """The neuron's discrete dynamics (PLIF: with the current value of its learned tau)."""
        m: Any = self.module
        mem_decay, input_gain = self._decays()
        return NeuronSpec(
            framework=self.framework,
            neuron=type(m).__name__,
            mem_decay=mem_decay,
            input_gain=input_gain,
            threshold=float(m.v_threshold),
            reset="subtract" if m.v_reset is None else "zero",
            fire_on_equal=True,
            syn_decay=None,
            reset_value=0.0 if m.v_reset is None else float(m.v_reset),
            rest=0.0 if m.v_reset is None else float(m.v_reset),
        )

    @property
    def multistep(self) -> bool:
        """True in step mode ``"m"`` (input ``[T, B, ...]``)."""
        return bool(self.module.step_mode == "m")

    def _after_uninstall(self) -> None:
        """Restore the float threshold, the surrogate and ``store_v_seq``."""
        self._restore()
        if self._enabled_v_seq:
            m: Any = self.module
            m.store_v_seq = False
            self._enabled_v_seq = False
        self._membrane_read = False
        self._call = None
        self._left = None

    def reset(self) -> None:
        """``module.reset()``: every memory back to its reset value (``v`` to a float)."""
        m: Any = self.module
        m.reset()
        self._left = None

    def state_dict(self) -> dict[str, Tensor]:
        """Detached copies of every memory (``register_memory``); floats as 0-d float64."""
        m: Any = self.module
        out: dict[str, Tensor] = {}
        for name, value in m._memories.items():
            if isinstance(value, Tensor):
                out[name] = value.detach().clone()
            else:
                out[name] = torch.tensor(float(value), dtype=torch.float64)
        return out

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the memories saved by :meth:`state_dict`."""
        m: Any = self.module
        memories: dict[str, Any] = m._memories
        missing = [name for name in memories if name not in state]
        if missing:
            raise InputError(
                f"{self.describe()}: state lacks {missing}; expected keys {list(memories)}"
            )
        for name in memories:
            value = state[name]
            reset_value = m._memories_rv.get(name)
            if value.ndim == 0 and isinstance(reset_value, (float, int)):
                memories[name] = float(value.item())
            else:
                memories[name] = value.detach().clone()
        self._left = None

    # ------------------------------------------------------------------ hooks

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._restore()  # defensive: a previous call that never reached the forward hook
        m: Any = module
        mode = m.step_mode
        threshold: float | Tensor = m.v_threshold
        surrogate = m.surrogate_function
        if (  # the configuration was changed after install: re-validate (raises)
            not isinstance(threshold, (float, int))
            or m._neuron_precision is not None
            or mode not in ("s", "m")
            or not getattr(surrogate, "spiking", True)
        ):
            self._validate()
        x = args[0] if args else next(iter(kwargs.values()))
        v = m._memories["v"]
        self._call_restarted = self._restarted(v, self._left)
        if self.detach_state:
            if isinstance(v, Tensor) and v.requires_grad:
                m._memories["v"] = v.detach()
        multi = mode == "m"
        if multi and self._membrane_read and not m.store_v_seq:
            m.store_v_seq = True
            self._enabled_v_seq = True
        elif not multi and self._enabled_v_seq:  # "s" mode would append to v_seq every step
            m.store_v_seq = False
            self._enabled_v_seq = False
        offset = self.threshold_offset
        if offset is not None:
            threshold = offset.to(device=x.device, dtype=x.dtype) + threshold
            self._swapped = (m.v_threshold, surrogate)
            m.v_threshold = threshold
            if type(surrogate) in _CLOSED_FORMS:
                m.surrogate_function = _UnfusedSurrogate(surrogate)
        self._call = _Call(
            x,
            m._memories["v"],
            threshold,
            surrogate,
            multi,
            self._charge_params(),
        )

    def _restore(self) -> None:
        if self._swapped is not None:
            m: Any = self.module
            m.v_threshold, m.surrogate_function = self._swapped
            self._swapped = None

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Tensor | None:
        self._restore()
        call, self._call = self._call, None
        if output is None or call is None or self._on_step is None:
            return None  # the forward raised (always_call), nothing to observe
        spikes: Tensor = output
        self._left = module._memories["v"]  # type: ignore[index]
        v_seq = None
        if call.multi and getattr(module, "store_v_seq", False):
            v_seq = getattr(module, "v_seq", None)

        computed: list[Tensor] = []

        def membrane() -> Tensor:  # once: a mask function and the observation may both read it
            if not computed:
                computed.append(self._membrane(call, spikes, v_seq))
            return computed[0]

        mask = self.mask_for(spikes, membrane)
        result = spikes if mask is None else spikes * mask
        s = result.detach() if result.requires_grad else result

        def surrogate(u: Tensor) -> Tensor:
            return self._psi(call, u)

        self._on_step(
            NeuronObservation(s, membrane, surrogate, self._call_restarted, one_step=not call.multi)
        )
        return None if mask is None else result

    # ------------------------------------------------------------------ observation

    def _membrane(self, call: _Call, spikes: Tensor, v_seq: Tensor | None) -> Tensor:
        m: Any = self.module
        mode = "m" if call.multi else "s"
        self._membrane_read = self._membrane_read or call.multi
        with torch.no_grad():
            x = call.x.detach()
            v0 = m.materialize_states((x,), (call.v_prev,), mode)[0].detach()
            fired = spikes.detach()
            if not call.multi:
                u = self._charge(x, v0, call.charge_params).unsqueeze(0)
                fired = fired.unsqueeze(0)
            elif isinstance(v_seq, Tensor) and v_seq.shape == x.shape:
                prev = torch.cat((v0.unsqueeze(0), v_seq[:-1].detach().to(v0.dtype)))
                u = self._charge(x, prev, call.charge_params)
            else:
                steps = []
                v = v0
                for t in range(x.shape[0]):
                    h = self._charge(x[t], v, call.charge_params)
                    steps.append(h)
                    v = _sj_functional.voltage_reset(
                        h, fired[t].to(h.dtype), call.threshold, m.v_reset, False
                    )
                u = torch.stack(steps)
            if type(call.surrogate) not in _CLOSED_FORMS:
                # The fused kernels fire at h >= threshold by construction; another surrogate
                # is called on u - threshold and could change the firing rule.
                self._check_spikes(u, fired, call.threshold)
        return u

    def _check_spikes(self, u: Tensor, fired: Tensor, threshold: float | Tensor) -> None:
        """Raise when the module's spikes are not ``u >= threshold`` (GPU: beyond rounding ties)."""
        predicted = u >= threshold
        bad = predicted != (fired != 0)
        if bool(bad.any()):
            # On CPU the rebuilt u is bit-exact; GPU kernels may round differently (FMA), so
            # there a disagreement within a few ulps of the threshold is a tie, not an error.
            tie = torch.zeros_like(bad)
            if u.device.type != "cpu":
                scale = torch.as_tensor(threshold, dtype=u.dtype, device=u.device).abs()
                tie = (u - threshold).abs() <= 16 * torch.finfo(u.dtype).eps * scale.clamp_min(1)
            if bool((bad & ~tie).any()):
                raise UnsupportedModuleError(
                    f"{self.describe()}: the module's output is not H(u - threshold) with u >= "
                    f"threshold at {int((bad & ~tie).sum())} place(s); the surrogate "
                    f"{type(self.module.surrogate_function).__name__} or a subclass changes the "
                    "firing rule, which this adapter does not support."
                )

    def _psi(self, call: _Call, u: Tensor) -> Tensor:
        centred = u - call.threshold
        sg = call.surrogate
        closed = _CLOSED_FORMS.get(type(sg))
        alpha = getattr(sg, "alpha", None)
        if closed is not None and isinstance(alpha, (float, int)) and not isinstance(alpha, bool):
            return closed(centred, float(alpha))
        return surrogate_by_autograd(sg, centred)


class SpikingJellyIFAdapter(SpikingJellyNeuronAdapter):
    """``neuron.IFNode``: ``u[t] = v[t-1] + x[t]`` (``mem_decay = input_gain = 1``), exact."""

    neuron_types: ClassVar[tuple[type, ...]] = (_sj_neuron.IFNode,)

    def _charge(self, x: Tensor, v: Tensor, params: tuple[Any, ...]) -> Tensor:
        return v + x

    def _decays(self) -> tuple[float, float]:
        return 1.0, 1.0


class SpikingJellyLIFAdapter(SpikingJellyNeuronAdapter):
    """``neuron.LIFNode``: ``u = v + (x - (v - v_reset)) / tau`` with ``decay_input``, else
    ``u = v - (v - v_reset) / tau + x`` (``v_reset=None`` counts as 0 in the charge).

    Spec: ``mem_decay = 1 - 1/tau``; ``input_gain = 1/tau`` with ``decay_input=True``, else 1.

    With a float ``v_reset`` the membrane leaks towards it: the spec's ``rest``. With
    ``v_reset=None`` (soft reset) the charge leaks towards 0.
    """

    neuron_types: ClassVar[tuple[type, ...]] = (_sj_neuron.LIFNode,)

    def _validate_family(self) -> None:
        tau = self.module.tau
        if isinstance(tau, bool) or not isinstance(tau, (float, int)) or not tau > 1:
            raise self._unsupported("tau", tau, "a Python float > 1")

    def _charge_params(self) -> tuple[Any, ...]:
        m: Any = self.module
        return (m.tau, m.decay_input, m.v_reset)

    def _charge(self, x: Tensor, v: Tensor, params: tuple[Any, ...]) -> Tensor:
        tau, decay_input, v_reset = params
        return _sj_functional.lif_charge(x, v, tau, decay_input, v_reset)

    def _decays(self) -> tuple[float, float]:
        m: Any = self.module
        k = 1.0 / float(m.tau)
        return 1.0 - k, k if m.decay_input else 1.0


class SpikingJellyPLIFAdapter(SpikingJellyNeuronAdapter):
    """``neuron.ParametricLIFNode``: LIF with ``1/tau = sigmoid(w)``, ``w`` learned.

    The spec reads the current ``w`` (``mem_decay = 1 - sigmoid(w)``, ``input_gain =
    sigmoid(w)`` with ``decay_input=True``, else 1); the membrane uses the ``w`` captured when
    the call began. Like LIF, a float ``v_reset`` is the spec's ``rest``.
    """

    neuron_types: ClassVar[tuple[type, ...]] = (_sj_neuron.ParametricLIFNode,)

    def _validate_family(self) -> None:
        w = self.module.w
        if not isinstance(w, Tensor) or w.numel() != 1:
            raise self._unsupported("w", w, "a scalar parameter")

    def _charge_params(self) -> tuple[Any, ...]:
        m: Any = self.module
        return (m.w.detach().clone(), m.decay_input, m.v_reset)

    def _charge(self, x: Tensor, v: Tensor, params: tuple[Any, ...]) -> Tensor:
        w, decay_input, v_reset = params
        q = w.sigmoid()
        reset_value = 0.0 if v_reset is None else v_reset
        if decay_input:
            return v + (x - (v - reset_value)) * q
        return v - (v - reset_value) * q + x

    def _decays(self) -> tuple[float, float]:
        m: Any = self.module
        q = float(torch.sigmoid(m.w.detach()).item())
        return 1.0 - q, q if m.decay_input else 1.0


ADAPTERS: tuple[type[NeuronAdapter], ...] = (
    SpikingJellyIFAdapter,
    SpikingJellyLIFAdapter,
    SpikingJellyPLIFAdapter,
)
