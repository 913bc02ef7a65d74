"""Adapters for Norse 1.x neurons (``norse.torch``).

Covered modules and step modes:

* :class:`NorseCellAdapter`: ``LIFCell`` (membrane ``v`` and synaptic current ``i``) and
  ``LIFBoxCell`` (membrane ``v`` only), one time step per call (``multistep = False``).
* :class:`NorseSequenceAdapter`: ``LIF``, a whole ``[T, B, ...]`` sequence per call.
* :class:`NorseLiftAdapter`: ``Lift(LIFCell())`` / ``Lift(LIFBoxCell())``, a cell applied per time
  step over a ``[T, B, ...]`` sequence; one observation per ``Lift`` call.

How Norse computes one step (``norse/torch/functional/lif.py``, ``lif_box.py``), with
``g = dt * tau_mem_inv``::

    LIFCell:     i_jump = i + I;  v' = v + g * ((v_leak - v) + i_jump)
                 i_next = i_jump - dt * tau_syn_inv * i_jump
    LIFBoxCell:  v' = v + g * (I + v_leak - v)
    z = threshold(v' - v_th, method, alpha)      # heaviside: fires at v' > v_th
    v_next = (1 - z) * v' + z * v_reset          # LIFBoxCell: p.reset_method (value or subtract)

This is exactly the :class:`~plasticity_plugins.adapters.NeuronSpec` form, ``rest = v_leak``:
``mem_decay = 1 - g``, ``input_gain = g``, and for ``LIFCell`` ``syn_decay = 1 - dt * tau_syn_inv``
where the spec's current ``i[t]`` is Norse's ``i_jump`` (the current *including* this step's
input, which is what Norse uses in the voltage update); the current Norse stores in its state is
``syn_decay * i_jump``, i.e. already decayed for the next step. Same ordering as the spec, nothing
lost; Norse's initial membrane is ``v_leak``.

Norse keeps the neuron state in the user's loop (``z, state = cell(x, state)``), not in the
module. The adapters therefore observe it: a forward pre-hook (``with_kwargs=True``) captures the
input and the state passed in (positionally or as ``state=``; ``None`` means Norse's initial
state), and rebuilds the pre-reset membrane lazily from them with Norse's own expressions (cells)
or by replaying the module's own step function (``LIF``, ``Lift``), because ``LIF`` calls a plain
function per step and no hook inside it fires.

``s == H(u - v_th)`` (``u > v_th``) holds for every supported configuration: every method of
Norse 1.1's ``threshold`` has a deterministic Heaviside forward (the stochastic ``Logistic`` /
``CircDist`` functions are not reachable through it), and ``u`` is rebuilt with Norse's own
arithmetic, so no runtime check is needed (the tests verify it bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from plasticity_plugins.errors import (
    InputError,
    UnsupportedModuleError,
    check_version,
    require_framework,
)

from .base import NeuronAdapter, NeuronObservation, NeuronSpec, ResetKind, surrogate_by_autograd

fw = require_framework("norse")
check_version("norse", version("norse"), "1.1", "2")

from norse.torch.functional.lif import LIFFeedForwardState, lif_feed_forward_step  # noqa: E402
from norse.torch.functional.lif_box import (  # noqa: E402
    LIFBoxFeedForwardState,
    lif_box_feed_forward_step,
)
from norse.torch.functional.reset import reset_subtract, reset_value  # noqa: E402
from norse.torch.functional.threshold import threshold  # noqa: E402
from norse.torch.module.coba_lif import CobaLIFCell  # noqa: E402
from norse.torch.module.leaky_integrator import LI, LICell  # noqa: E402
from norse.torch.module.leaky_integrator_box import LIBoxCell  # noqa: E402
from norse.torch.module.lif import LIF, LIFCell  # noqa: E402
from norse.torch.module.lif_box import LIFBoxCell  # noqa: E402
from norse.torch.module.lift import Lift  # noqa: E402
from norse.torch.module.snn import SNN, SNNCell, SNNRecurrent, SNNRecurrentCell  # noqa: E402

__all__ = ["ADAPTERS", "NorseCellAdapter", "NorseLiftAdapter", "NorseSequenceAdapter"]

_NEURON_BASES: tuple[type, ...] = (SNNCell, SNNRecurrentCell, SNN, SNNRecurrent, CobaLIFCell)
"""Norse's spiking neuron base classes (for :meth:`NeuronAdapter.is_neuron`)."""

_NON_SPIKING: tuple[type, ...] = (LICell, LI, LIBoxCell)
"""Norse read-out integrators built on the same bases, which never spike: not neurons here."""


# --------------------------------------------------------------------------- membranes
def _lif_membrane(x: Tensor, state: Any, p: Any, dt: float) -> Tensor:
    """Pre-reset membrane of ``lif_feed_forward_step``, written exactly as Norse computes it."""
    i_jump = state.i + x
    dv = dt * p.tau_mem_inv * ((p.v_leak - state.v) + i_jump)
    return state.v + dv


def _lif_box_membrane(x: Tensor, state: Any, p: Any, dt: float) -> Tensor:
    """Pre-reset membrane of ``lif_box_feed_forward_step``, written exactly as Norse does."""
    dv = dt * p.tau_mem_inv * (x + p.v_leak - state.v)
    return state.v + dv


@dataclass(frozen=True)
class _Model:
    """What differs between the Norse neuron models the adapters support."""

    name: str
    state_type: type
    step: Callable[..., tuple[Tensor, Any]]
    membrane: Callable[[Tensor, Any, Any, float], Tensor]
    fields: tuple[str, ...]
    has_current: bool


_LIF = _Model("LIF", LIFFeedForwardState, lif_feed_forward_step, _lif_membrane, ("v", "i"), True)
_LIF_BOX = _Model(
    "LIFBox", LIFBoxFeedForwardState, lif_box_feed_forward_step, _lif_box_membrane, ("v",), False
)
_MODELS: dict[type, _Model] = {LIFCell: _LIF, LIF: _LIF, LIFBoxCell: _LIF_BOX}


# --------------------------------------------------------------------------- surrogates
_SQRT_PI = torch.as_tensor(math.pi).sqrt()


def _super(x: Tensor, alpha: Any) -> Tensor:
    # Norse 1.1 SuperSpike.backward: grad / (|x| + 1)^2 -- alpha is ignored.
    return 1.0 / (torch.abs(x) + 1.0).pow(2)


def _heaviside(x: Tensor, alpha: Any) -> Tensor:
    # torch.gt(...).to(dtype): no gradient at all.
    return torch.zeros_like(x)


def _tanh(x: Tensor, alpha: Any) -> Tensor:
    # HeaviTanh.backward: 1 - tanh(alpha x)^2 (no factor alpha).
    return 1 - (x * alpha).tanh().pow(2)


def _circ(x: Tensor, alpha: Any) -> Tensor:
    # HeaviCirc.backward simplifies to alpha^3 / (alpha^2 + x^2)^(3/2).
    return alpha**3 / (alpha**2 + x.pow(2)).pow(1.5)


def _triangle(x: Tensor, alpha: Any) -> Tensor:
    # Triangle.backward: alpha * relu(1 - |x|).
    return alpha * torch.relu(1 - x.abs())


def _heavi_erfc(x: Tensor, alpha: Any) -> Tensor:
    # HeaviErfc.backward: 2 exp(-(alpha x)^2) / sqrt(pi) (no factor alpha); Norse's sqrt(pi) is
    # torch.as_tensor(np.pi).sqrt(), a float32 value, kept here for identical results.
    return 2 * torch.exp(-(alpha * x).pow(2)) / _SQRT_PI


_SURROGATES: dict[str, Callable[[Tensor, Any], Tensor]] = {
    "super": _super,
    "heaviside": _heaviside,
    "tanh": _tanh,
    "circ": _circ,
    "triangle": _triangle,
    "heavi_erfc": _heavi_erfc,
}
"""Closed-form ``dz/dx`` of ``norse.torch.functional.threshold.threshold(x, method, alpha)``."""


# --------------------------------------------------------------------------- helpers
def _detach_state(state: Any) -> Any:
    """A copy of a Norse state tuple with every tensor detached (no data copy)."""
    values = [t.detach() if isinstance(t, Tensor) else t for t in state]
    return type(state)(*values) if hasattr(state, "_fields") else tuple(values)


def _scalar(value: Any) -> float | None:
    """``float(value)`` for a Python number or one-element tensor, else None."""
    if isinstance(value, Tensor):
        return float(value.detach().reshape(())) if value.numel() == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


#: The parameters a Norse spec is read from (a tensor among them may change in place).
_SPEC_FIELDS = ("tau_mem_inv", "tau_syn_inv", "v_th", "v_reset", "v_leak", "reset_method")


def _value(value: Any) -> float:
    """``float`` of a parameter already validated to be a scalar."""
    out = _scalar(value)
    if out is None:
        raise UnsupportedModuleError(f"expected a scalar Norse parameter, got {value!r}")
    return out


class _Call:
    """What one forward call needs to rebuild ``u`` and ``psi`` lazily (all detached)."""

    __slots__ = ("adapter", "p", "state", "x")

    def __init__(self, adapter: _NorseAdapter, x: Tensor, state: Any, p: Any) -> None:
        self.adapter = adapter
        self.x = x
        self.state = state
        self.p = p

    def membrane(self) -> Tensor:
        """The pre-reset membrane, time-first."""
        return self.adapter._membrane(self.x, self.state, self.p)

    def surrogate(self, u: Tensor) -> Tensor:
        """Norse's surrogate ``dz/du`` at ``u`` with the threshold of this call."""
        return self.adapter._surrogate(u - self.p.v_th, self.p)


# --------------------------------------------------------------------------- base adapter
class _NorseAdapter(NeuronAdapter):
    """Shared machinery of the Norse adapters (hooks, parameters, state cache).

    The neuron's state lives in the user's loop, so the adapter's state methods mean:

    * :meth:`state_dict`: the state the module returned from its last forward call (or the
      state loaded with :meth:`load_state_dict` and not yet used); ``{}`` when there is none,
      meaning Norse's initial state.
    * :meth:`load_state_dict`: the loaded state is passed to the next forward call that is
      given ``state=None`` (e.g. a loop restarted after a checkpoint), so the continuation is
      identical; a call given an explicit state uses that state and drops the loaded one.
    * :meth:`reset`: forgets the last and the loaded state; the next call given ``state=None``
      starts from Norse's initial state.

    Threshold offset: during each forward call the neuron's parameter tuple ``p`` is replaced
    by ``p._replace(v_th=v_th + offset)`` (offset cast to the input's dtype and device) and the
    original tuple object is put back right after the call (also when the call raises), so
    Norse's own threshold, reset-by-subtraction and surrogate use the shifted threshold.
    Spike mask: the returned spikes are multiplied by the mask; the state Norse returns (and so
    the neuron's reset) follows the unmasked spikes.

    ``u`` is rebuilt lazily from (detached views of) the call's input and incoming state: read
    it before that input tensor is modified in place (e.g. a reused input buffer).
    """

    framework: ClassVar[str] = "norse"

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self._cell: Any = self._neuron_of(module)
        if not self.handles(module) or type(self._cell) not in _MODELS:
            raise UnsupportedModuleError(
                f"norse.{type(module).__name__} is not handled by {type(self).__name__}; "
                f"supported: {', '.join(t.__name__ for t in self.neuron_types)}"
            )
        self._model = _MODELS[type(self._cell)]
        self._validate()
        self._call: _Call | None = None
        self._saved_p: Any = None
        self._last: Any = None
        self._loaded: Any = None
        self._call_restarted = False

    # ---- per-subclass hooks -------------------------------------------------------------
    @staticmethod
    def _neuron_of(module: nn.Module) -> Any:
        """The module holding ``p``, ``dt``, ``activation`` (the module itself, or Lift's cell)."""
        return module

    def _split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Tensor, Any]:
        """The input tensor and the state (or None) of a ``forward(input_tensor, state)`` call."""
        x = args[0] if args else kwargs["input_tensor"]
        state = args[1] if len(args) > 1 else kwargs.get("state")
        return x, state

    def _join(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], state: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's arguments with ``state`` replaced."""
        if len(args) > 1:
            return (args[0], state, *args[2:]), kwargs
        return args, {**kwargs, "state": state}

    def _initial_state(self, x: Tensor) -> Any:
        """Norse's initial state for a call with input ``x`` (what ``state=None`` gives)."""
        return self._cell.state_fallback(x)

    def _membrane(self, x: Tensor, state: Any, p: Any) -> Tensor:
        """Pre-reset membrane ``[T, B, ...]`` of one call (x: the call's input)."""
        dt = self._cell.dt
        with torch.no_grad():
            if state is None:
                state = self._initial_state(x)
            if not self.multistep:
                return self._model.membrane(x, state, p, dt).unsqueeze(0)
            out = []
            for t in range(x.shape[0]):
                out.append(self._model.membrane(x[t], state, p, dt))
                _, state = self._cell.activation(x[t], state, p, dt)
            return torch.stack(out)

    # ---- validation / spec ---------------------------------------------------------------
    def describe(self) -> str:
        """``norse.<Class>``, e.g. ``norse.LIFCell``."""
        return f"norse.{type(self.module).__name__}"

    def _unsupported(self, option: str, value: Any, supported: str) -> UnsupportedModuleError:
        return UnsupportedModuleError(
            f"{self.describe()}: {option}={value!r} is not supported by plasticity_plugins' "
            f"Norse adapter; supported: {supported}."
        )

    def _validate(self) -> None:
        cell, model = self._cell, self._model
        p = cell.p
        if cell.activation is not model.step:
            name = getattr(cell.activation, "__name__", repr(cell.activation))
            raise self._unsupported(
                "activation",
                f"{name} (p.method={p.method!r})",
                f"Norse's {model.step.__name__} (any p.method except 'adjoint')",
            )
        dt = _scalar(cell.dt)
        if dt is None or dt <= 0:
            raise self._unsupported("dt", cell.dt, "a positive number")
        numeric = ["tau_mem_inv", "v_leak", "v_th", "v_reset"]
        if model.has_current:
            numeric.insert(0, "tau_syn_inv")
        for name in numeric:
            if _scalar(getattr(p, name)) is None:
                raise self._unsupported(
                    f"p.{name}",
                    getattr(p, name),
                    "a Python number or a one-element tensor (NeuronSpec holds one value per "
                    "layer; per-neuron thresholds go through set_threshold_offset)",
                )
        if p.method not in _SURROGATES:
            try:
                threshold(torch.zeros(1), p.method, p.alpha)
            except Exception as exc:
                raise self._unsupported(
                    "p.method", p.method, f"Norse's threshold methods {sorted(_SURROGATES)}"
                ) from exc
        reset = getattr(p, "reset_method", reset_value)
        if reset not in (reset_value, reset_subtract):
            raise self._unsupported(
                "p.reset_method",
                getattr(reset, "__name__", reset),
                "norse.torch.functional.reset.reset_value or reset_subtract",
            )

    @property
    def spec(self) -> NeuronSpec:
        """Norse's forward-Euler step as a :class:`NeuronSpec` (see the module docstring)."""
        p, dt = self._cell.p, self._cell.dt
        fields = tuple(getattr(p, name, None) for name in _SPEC_FIELDS)
        return self._cached_spec((p, dt, *fields), self._build_spec)

    def _build_spec(self) -> NeuronSpec:
        p, dt = self._cell.p, self._cell.dt
        # The same arithmetic (and so the same rounding) as Norse's ``dt * p.tau_mem_inv``.
        gain = _value(dt * p.tau_mem_inv)
        reset: ResetKind = (
            "subtract" if getattr(p, "reset_method", reset_value) is reset_subtract else "zero"
        )
        return NeuronSpec(
            framework="norse",
            neuron=self._neuron_name(),
            mem_decay=1.0 - gain,
            input_gain=gain,
            threshold=_value(p.v_th),
            reset=reset,
            fire_on_equal=False,
            syn_decay=1.0 - _value(dt * p.tau_syn_inv) if self._model.has_current else None,
            reset_value=_value(p.v_reset),
            rest=_value(p.v_leak),
        )

    def _neuron_name(self) -> str:
        return type(self.module).__name__

    @classmethod
    def is_neuron(cls, module: nn.Module) -> bool:
        """Norse spiking neurons (cells, sequence modules, ``Lift`` of a neuron), supported or not.

        Norse's leaky integrators (``LICell``, ``LI``, ``LIBoxCell``) never spike: not neurons.
        """
        if isinstance(module, Lift):
            return cls.is_neuron(module.lifted_module)
        return isinstance(module, _NEURON_BASES) and not isinstance(module, _NON_SPIKING)

    @property
    def multistep(self) -> bool:
        """False for cells (one step per call), True for ``LIF`` and ``Lift``."""
        return True

    # ---- surrogate -------------------------------------------------------------------------
    @staticmethod
    def _surrogate(centred: Tensor, p: Any) -> Tensor:
        """``d threshold(x, p.method, p.alpha) / dx`` at ``x = centred``: closed form, or autograd
        on Norse's own ``threshold`` for a method without one."""
        closed = _SURROGATES.get(p.method)
        if closed is not None:
            return closed(centred, p.alpha)
        method, alpha = p.method, p.alpha
        return surrogate_by_autograd(lambda c: threshold(c, method, alpha), centred)

    # ---- hooks -----------------------------------------------------------------------------
    def _after_uninstall(self) -> None:
        """The parameter tuple ``p`` is the original object again."""
        self._call = None
        if self._saved_p is not None:
            self._cell.p = self._saved_p
            self._saved_p = None

    def _pre_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        x, state = self._split(args, kwargs)
        if x.layout != torch.strided:
            raise InputError(
                f"{self.describe()}: sparse input ({x.layout}) is not supported by the adapter; "
                "pass a dense tensor"
            )
        # state=None starts from Norse's initial state, unless a loaded state is pending
        self._call_restarted = state is None and self._loaded is None and self._last is not None
        changed = False
        if self._loaded is not None:
            if state is None:
                state, changed = self._loaded, True
            self._loaded = None
        if state is None and not isinstance(self._cell.p.v_leak, Tensor):
            raise UnsupportedModuleError(
                f"{self.describe()}: p.v_leak={self._cell.p.v_leak!r} is a Python number and "
                "state=None: Norse 1.1 builds the initial state with clone_tensor(p.v_leak), "
                "which raises for a number; pass v_leak=torch.tensor(...) in the parameters "
                "or an explicit initial state"
            )
        if state is not None and self.detach_state:
            state, changed = _detach_state(state), True
        cell = self._cell
        p = cell.p
        offset = self.threshold_offset
        if offset is not None:
            if offset.dtype != x.dtype or offset.device != x.device:
                offset = offset.to(device=x.device, dtype=x.dtype)
            self._saved_p = p
            p = p._replace(v_th=p.v_th + offset.detach())
            cell.p = p
        self._call = _Call(self, x.detach(), None if state is None else _detach_state(state), p)
        return self._join(args, kwargs, state) if changed else None

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], result: Any) -> Any:
        if self._saved_p is not None:
            self._cell.p = self._saved_p
            self._saved_p = None
        call, self._call = self._call, None
        if result is None or call is None:  # the forward call raised
            return None
        z, state = result
        if getattr(module, "record_states", False):
            state = type(state)(*(t[-1] for t in state))
        self._last = _detach_state(state)
        mask = self.mask_for(z, call.membrane)
        if mask is not None:
            z = z * mask
            result = (z, *result[1:])
        s = z.detach() if z.requires_grad else z
        if self._on_step is not None:
            self._on_step(
                NeuronObservation(
                    s,
                    call.membrane,
                    call.surrogate,
                    self._call_restarted,
                    one_step=not self.multistep,
                )
            )
        return result if mask is not None else None

    # ---- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the last seen and any loaded state: next ``state=None`` call starts fresh."""
        self._last = None
        self._loaded = None

    def state_dict(self) -> dict[str, Tensor]:
        """Detached copies of the last state (``{}``: Norse's initial state)."""
        state = self._loaded if self._loaded is not None else self._last
        if state is None:
            return {}
        return {name: getattr(state, name).detach().clone() for name in self._model.fields}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Use ``state`` for the next forward call given ``state=None`` (``{}``: reset)."""
        if not state:
            self.reset()
            return
        fields = self._model.fields
        if set(state) != set(fields):
            raise InputError(
                f"{self.describe()}: state keys {sorted(state)} do not match the neuron's state "
                f"fields {list(fields)}"
            )
        self._loaded = self._model.state_type(**{f: state[f].detach().clone() for f in fields})
        self._last = None


# --------------------------------------------------------------------------- public adapters
class NorseCellAdapter(_NorseAdapter):
    """Norse ``LIFCell`` and ``LIFBoxCell``: one time step per call, ``z, state = cell(x, state)``.

    ``u`` is rebuilt from the state passed in (Norse's initial state when ``None``) and the input
    with Norse's own expressions, so it is bit-identical to the value Norse thresholded.
    NeuronSpec: ``mem_decay = 1 - dt*tau_mem_inv``, ``input_gain = dt*tau_mem_inv``,
    ``threshold = v_th``, ``fire_on_equal = False``, reset ``"zero"`` to ``v_reset``
    (``LIFBoxCell`` with ``reset_subtract``: ``"subtract"``), and for ``LIFCell``
    ``syn_decay = 1 - dt*tau_syn_inv`` (exact; see the module docstring for the current's
    ordering). See :class:`_NorseAdapter` for the meaning of reset / state_dict with Norse.
    """

    neuron_types: ClassVar[tuple[type, ...]] = (LIFCell, LIFBoxCell)

    @property
    def multistep(self) -> bool:
        """False: one step per call; observations have ``T = 1``."""
        return False


class NorseSequenceAdapter(_NorseAdapter):
    """Norse ``LIF``: a whole ``[T, B, ...]`` sequence per call, ``z, state = lif(x, state)``.

    ``LIF`` runs ``lif_feed_forward_step`` in a plain loop (no hook fires inside it), so ``u`` is
    rebuilt by replaying that step function from the call's initial state, only when a rule
    reads ``u``. NeuronSpec as for ``LIFCell`` (see :class:`NorseCellAdapter`).
    ``record_states=True`` is supported (the last of the recorded states is kept).
    """

    neuron_types: ClassVar[tuple[type, ...]] = (LIF,)


class NorseLiftAdapter(_NorseAdapter):
    """Norse ``Lift(LIFCell())`` / ``Lift(LIFBoxCell())``: a cell applied per step of a sequence.

    The hooks sit on the ``Lift`` module only (none on the cell, so the cell used on its own
    elsewhere is not observed): the pre-hook captures the input and the initial state (``Lift``
    takes ``x`` or ``(x, state)``), the forward hook emits ONE observation ``[T, B, ...]`` per
    ``Lift`` call, and ``u`` is rebuilt lazily by replaying the cell's own step function. The
    threshold offset is applied to the lifted cell's ``p`` for the duration of the call;
    ``detach_state`` detaches the state handed to ``Lift`` (gradients flow within the call).
    NeuronSpec as for the lifted cell (see :class:`NorseCellAdapter`).
    """

    neuron_types: ClassVar[tuple[type, ...]] = (Lift,)

    @classmethod
    def handles(cls, module: nn.Module) -> bool:
        """A ``Lift`` whose lifted module is a ``LIFCell`` or ``LIFBoxCell``."""
        return type(module) is Lift and type(module.lifted_module) in NorseCellAdapter.neuron_types

    def __init__(self, module: nn.Module) -> None:
        if not self.handles(module):
            inner = type(getattr(module, "lifted_module", None)).__name__
            raise UnsupportedModuleError(
                f"norse.{type(module).__name__}: lifted module {inner} is not supported; "
                "supported: Lift(LIFCell(...)) and Lift(LIFBoxCell(...))"
            )
        super().__init__(module)

    @staticmethod
    def _neuron_of(module: nn.Module) -> Any:
        return module.lifted_module

    def describe(self) -> str:
        """``norse.Lift(<Cell>)``."""
        return f"norse.Lift({type(self._cell).__name__})"

    def _neuron_name(self) -> str:
        return f"Lift({type(self._cell).__name__})"

    def _split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Tensor, Any]:
        x = args[0] if args else kwargs["x"]
        if isinstance(x, tuple):
            return x[0], x[1]
        return x, None

    def _join(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], state: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        x, _ = self._split(args, kwargs)
        if args:
            return ((x, state), *args[1:]), kwargs
        return args, {**kwargs, "x": (x, state)}

    def _initial_state(self, x: Tensor) -> Any:
        return self._cell.state_fallback(x[0])


ADAPTERS: tuple[type[NeuronAdapter], ...] = (
    NorseCellAdapter,
    NorseSequenceAdapter,
    NorseLiftAdapter,
)
