"""snnTorch 1.x adapters: ``Leaky``, ``Synaptic``, ``RLeaky``, ``Alpha`` and ``Lapicque``.

Every supported snnTorch neuron is single-step (one forward call is one time step, input
``[B, *features]``) and keeps its state both as the values it returns (``init_hidden=False``) and
as module attributes (``mem``, ``syn``, ``spk``, ...), which snnTorch updates on every call in
both modes. With the default ``reset_delay=True`` the stored ``mem`` is exactly the pre-reset
membrane that was compared with the threshold (the reset of a spike at step ``t - 1`` is applied
inside the call of step ``t``), so the adapter reads ``u`` from ``module.mem`` after the call.

snnTorch facts this module relies on (snnTorch 1.0.0 source):

* spikes are ``spike_grad(mem - threshold)``, whose forward is ``(x > 0).float()``: firing at
  ``u > threshold`` and always float32, whatever the membrane's dtype;
* the reset of step ``t`` is ``spike_grad(mem[t-1] - threshold)`` recomputed at the start of the
  call with the threshold in effect *then*; the adapter makes this decision use the threshold
  (offset included) that produced the spike, so that a threshold offset changed between calls
  still resets exactly the neurons that fired;
* the dynamics follow ``module.state_function`` (chosen at construction), not the
  ``reset_mechanism`` attribute: changing ``reset_mechanism`` afterwards has no effect on the
  forward pass (the adapter refuses such a module);
* ``reset_delay=False`` stores and returns the membrane *after* the reset (refused);
* ``snntorch.utils.reset`` and the ``reset_hidden`` classmethods reset every instance of a class
  (snnTorch keeps all neurons ever created in ``SpikingNeuron.instances``); :meth:`reset` here
  resets only the adapted module, with its own ``reset_mem()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import CodeType
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from plasticity_plugins.errors import (
    StateError,
    UnsupportedModuleError,
    check_version,
    require_framework,
)

from .base import NeuronAdapter, NeuronObservation, NeuronSpec, ResetKind, surrogate_by_autograd

fw = require_framework("snntorch")
check_version("snntorch", fw.__version__, "1.0", "2")

__all__ = [
    "ADAPTERS",
    "AlphaAdapter",
    "LapicqueAdapter",
    "LeakyAdapter",
    "RLeakyAdapter",
    "SynapticAdapter",
]


# --------------------------------------------------------------------------------------------
# Surrogates: closed forms of snntorch.surrogate's backward passes, found by code identity.
# --------------------------------------------------------------------------------------------

_Psi = Callable[[Tensor], Tensor]
_ClosedForm = Callable[[dict[str, Any], Tensor], Tensor]


def _fast_sigmoid(p: dict[str, Any], x: Tensor) -> Tensor:
    return torch.reciprocal((p["slope"] * x.abs() + 1.0) ** 2)


def _atan(p: dict[str, Any], x: Tensor) -> Tensor:
    a = p["alpha"]
    return (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)


def _sigmoid(p: dict[str, Any], x: Tensor) -> Tensor:
    # snnTorch computes k e^{-kx} / (e^{-kx} + 1)^2, which is NaN (inf / inf) for k x < -88 in
    # float32; this is the same function in a form that stays finite.
    k = p["slope"]
    sig = torch.sigmoid(k * x)
    return k * sig * (1 - sig)


def _ste(p: dict[str, Any], x: Tensor) -> Tensor:
    return torch.ones_like(x)


def _heaviside(p: dict[str, Any], x: Tensor) -> Tensor:
    return (x > 0).to(x.dtype)


def _triangular(p: dict[str, Any], x: Tensor) -> Tensor:
    # snnTorch multiplies its float32 upstream gradient by the Python threshold: float32 values
    thr = torch.as_tensor(p["threshold"], dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    return torch.where(x >= 0, -thr, thr)


def _spike_rate_escape(p: dict[str, Any], x: Tensor) -> Tensor:
    return p["slope"] * torch.exp(-p["beta"] * (x - 1).abs())


def _sparse_fast_sigmoid(p: dict[str, Any], x: Tensor) -> Tensor:
    return (x > p["B"]).to(x.dtype) / (p["slope"] * x.abs() + 1.0) ** 2


def _closed_form_table() -> dict[CodeType, _ClosedForm]:
    sg = fw.surrogate
    factories: list[tuple[str, _ClosedForm]] = [
        ("fast_sigmoid", _fast_sigmoid),
        ("atan", _atan),
        ("sigmoid", _sigmoid),
        ("straight_through_estimator", _ste),
        ("heaviside", _heaviside),
        ("triangular", _triangular),
        ("spike_rate_escape", _spike_rate_escape),
        ("SFS", _sparse_fast_sigmoid),
    ]
    table: dict[CodeType, _ClosedForm] = {}
    for name, form in factories:
        factory = getattr(sg, name, None)
        if factory is not None:
            table[factory().__code__] = form
    return table


_CLOSED_FORMS = _closed_form_table()
_BYPASS = fw.SpikingNeuron._surrogate_bypass


def _closed_form(spike_fn: Any) -> _Psi | None:
    """The closed-form ``dS/dx`` of one of snntorch.surrogate's spike functions, else None."""
    code: CodeType | None = getattr(spike_fn, "__code__", None)
    form = _CLOSED_FORMS.get(code) if code is not None else None
    if code is None or form is None:
        return None
    cells = spike_fn.__closure__ or ()
    params = dict(zip(code.co_freevars, (c.cell_contents for c in cells), strict=True))
    return lambda x: form(params, x)


def _zero_psi(x: Tensor) -> Tensor:
    return torch.zeros_like(x)


def _resolve_surrogate(spike_fn: Any) -> _Psi:
    """``x -> dS/dx`` for a module's ``spike_grad``: closed form, zero (bypass) or autograd."""
    if spike_fn is _BYPASS:
        return _zero_psi  # surrogate_disable=True: (x > 0).float() has no gradient at all
    form = _closed_form(spike_fn)
    if form is not None:
        return form
    return lambda x: surrogate_by_autograd(spike_fn, x)


_PROBE = (-1.0, -1e-3, 0.0, 1e-3, 1.0)
_PROBE_EXPECTED = (0.0, 0.0, 0.0, 1.0, 1.0)


def _check_spike_fn(module: nn.Module) -> None:
    """Refuse a ``spike_grad`` whose forward is not ``H(x)`` (``x > 0``) with 0/1 values."""
    spike_fn: Any = module.spike_grad
    if spike_fn is _BYPASS or _closed_form(spike_fn) is not None:
        return
    name = getattr(spike_fn, "__qualname__", type(spike_fn).__name__)
    try:
        with torch.no_grad():
            out = spike_fn(torch.tensor(_PROBE))
        ok = isinstance(out, Tensor) and out.tolist() == list(_PROBE_EXPECTED)
        error: Exception | None = None
    except Exception as exc:  # a broken surrogate (e.g. snntorch.surrogate.LSO in 1.0)
        ok, error = False, exc
    if not ok:
        raise UnsupportedModuleError(
            f"snntorch.{type(module).__name__} with spike_grad={name}: its forward is not the "
            f"Heaviside step H(x) = (x > 0) with 0/1 outputs"
            + (f" (calling it failed: {error!r})" if error is not None else "")
            + "; the adapter needs s = H(u - threshold). Supported: any snntorch.surrogate "
            "function (or a custom autograd function) whose forward is (x > 0).float()."
        ) from error


# --------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------

_RESET_OF_STATE_FUNCTION: dict[str, ResetKind] = {
    "_base_sub": "subtract",
    "_base_zero": "zero",
    "_base_int": "none",
}


def _scalar(module: nn.Module, name: str) -> float:
    return float(getattr(module, name).detach())


def _decay(module: nn.Module, name: str) -> float:
    """snnTorch clamps its decay rates to [0, 1] in the forward pass."""
    return float(getattr(module, name).detach().clamp(0, 1))


def _base_threshold(module: nn.Module) -> Tensor:
    """The registered threshold (buffer, or Parameter with ``learn_threshold=True``)."""
    param = module._parameters.get("threshold")
    return param if param is not None else cast(Tensor, module._buffers["threshold"])


class _SnnTorchAdapter(NeuronAdapter):
    """Shared implementation of the snnTorch adapters (one subclass per neuron class).

    Hooks: a forward pre-hook (``with_kwargs=True``) that detaches the state when
    :attr:`detach_state` is set (module attributes and any state passed as arguments; it then
    returns the detached arguments) and puts the effective threshold in place when a threshold
    offset is (or was, at the previous call) set; and a forward hook (``always_call=True``, so the
    clean-up also runs when the forward raises) that removes the effective threshold, applies the
    spike mask (returning the masked output) and calls ``on_step``.

    Threshold offset: during a call the instance attribute ``threshold`` shadows the registered
    buffer / Parameter (which is never replaced, so a learnable threshold keeps its identity and
    still receives gradients through ``threshold + offset``). The reset decision and the amount
    subtracted for the previous step use the threshold of the previous step, the firing decision
    uses the current one (``module.state_function`` is wrapped for the duration of the call to
    switch between them). Outside a forward call the module is untouched.

    Spike mask: multiplies the returned spikes. The neuron's own reset follows the unmasked spikes
    (snnTorch recomputes it from ``mem``). ``RLeaky``'s stored ``spk`` (its recurrent input at the
    next step) is replaced by the masked spikes, so the recurrent synapse, like every downstream
    module and the observation, sees the masked ones.

    Observation: ``s`` is the (masked) output cast to the membrane's dtype (snnTorch's spikes are
    float32 even in a float64 module), ``u`` is ``module.mem`` after the call, and ``psi`` the
    derivative of ``module.spike_grad`` at ``u - threshold`` (offset included): a closed form for
    fast_sigmoid, atan, sigmoid, straight_through_estimator, heaviside, triangular,
    spike_rate_escape and SFS, zero for ``surrogate_disable=True``, autograd otherwise.
    """

    framework: ClassVar[str] = "snntorch"
    #: Names of the state attributes, in the order of the forward arguments after ``input_``
    #: (``mem`` is always last).
    _state_names: ClassVar[tuple[str, ...]] = ("mem",)
    #: Per-layer values that must be single-valued for a scalar NeuronSpec.
    _scalar_names: ClassVar[tuple[str, ...]] = ("threshold", "beta")

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self._validate()
        self._prev_threshold: Tensor | None = None
        self._next_threshold: Tensor | None = None
        self._left: Tensor | None = None  # the membrane the last call left
        self._call_restarted = False
        self._state_function: Callable[..., Any] | None = None
        spike_fn = module.spike_grad  # validated by _validate()
        self._surrogate_of: tuple[Any, _Psi] = (spike_fn, _resolve_surrogate(spike_fn))

    # ---------------------------------------------------------------- validation

    @classmethod
    def is_neuron(cls, module: nn.Module) -> bool:
        """Any snnTorch neuron: a ``SpikingNeuron`` or a module of ``snntorch._neurons``."""
        if isinstance(module, fw.SpikingNeuron):
            return True
        kind = type(module)
        # RecurrentOneToOne is RLeaky / RSynaptic's elementwise recurrent synapse, no neuron.
        return kind.__module__.startswith("snntorch._neurons.") and (
            kind.__name__ != "RecurrentOneToOne"
        )

    def _unsupported(self, option: str, why: str, supported: str) -> UnsupportedModuleError:
        return UnsupportedModuleError(
            f"{self.describe()} with {option} is not supported: {why}. Supported: {supported}."
        )

    def _validate(self) -> None:
        m: Any = self.module
        self._check_config()
        if not callable(m.__dict__.get("state_function")):
            raise self._unsupported(
                "no state_function", "snnTorch 1.x neurons choose one at construction", "1.x"
            )
        fn_name = getattr(m.state_function, "__name__", "")
        kind = _RESET_OF_STATE_FUNCTION.get(fn_name)
        if kind is None:
            raise self._unsupported(
                f"state_function={fn_name!r}",
                "the adapter only knows snnTorch's _base_sub / _base_zero / _base_int",
                "the state_function snnTorch sets at construction",
            )
        if kind != m.reset_mechanism:
            raise self._unsupported(
                f"reset_mechanism={m.reset_mechanism!r} set after construction",
                f"snnTorch 1.0 keeps the state_function chosen in __init__ ({fn_name}, i.e. "
                f"{kind!r}), so the forward pass ignores the new value",
                "reset_mechanism passed to the constructor",
            )
        self._reset_kind: ResetKind = kind
        gsf = m.graded_spikes_factor
        if isinstance(gsf, nn.Parameter) or gsf.numel() != 1 or float(gsf) != 1.0:
            raise self._unsupported(
                f"graded_spikes_factor={gsf.detach().tolist()}"
                + (" (learnable)" if isinstance(gsf, nn.Parameter) else ""),
                "graded spikes are not 0/1 spikes s = H(u - threshold)",
                "graded_spikes_factor=1.0 with learn_graded_spikes_factor=False",
            )
        for name in self._scalar_names:
            value = getattr(m, name)
            if value.numel() != 1:
                raise self._unsupported(
                    f"a per-neuron {name} of shape {tuple(value.shape)}",
                    "NeuronSpec holds one scalar per layer",
                    f"a single-valued {name} (float or one-element tensor)",
                )
        _check_spike_fn(m)

    def _check_config(self) -> None:
        """Options that break ``s == H(u - threshold)`` or the spec; cheap, run on every call."""
        m: Any = self.module
        if not getattr(m, "reset_delay", True):
            raise self._unsupported(
                "reset_delay=False",
                "snnTorch then stores and returns the membrane AFTER the reset, so the value "
                "compared with the threshold is lost",
                "reset_delay=True (the default)",
            )
        if m.inhibition:
            raise self._unsupported(
                "inhibition=True",
                "only the neuron with the largest membrane may fire, so s != H(u - threshold)",
                "inhibition=False (use a spike-mask rule such as k-WTA instead)",
            )
        if m.state_quant:
            raise self._unsupported(
                "state_quant",
                "the quantised state follows no NeuronSpec",
                "state_quant=False",
            )

    # ---------------------------------------------------------------- spec

    @property
    def multistep(self) -> bool:
        """snnTorch neurons process one time step per call."""
        return False

    @property
    def spec(self) -> NeuronSpec:
        """The neuron's spec, read from the module's current values (learnable ones included)."""
        m = self.module
        sources = tuple(getattr(m, name) for name in self._scalar_names if name != "threshold")
        return self._cached_spec((_base_threshold(m), *sources), self._build_spec)

    def _build_spec(self) -> NeuronSpec:
        mem_decay, input_gain, syn_decay = self._dynamics()
        return NeuronSpec(
            framework="snntorch",
            neuron=type(self.module).__name__,
            mem_decay=mem_decay,
            input_gain=input_gain,
            threshold=float(_base_threshold(self.module).detach()),
            reset=self._reset_kind,
            fire_on_equal=False,
            syn_decay=syn_decay,
            reset_value=0.0,
            reset_after_integration=self._reset_after_integration(),
            exact=self._exact,
        )

    _exact: ClassVar[bool] = True
    #: Reset kinds that snnTorch applies after the decay and the input for this neuron.
    _after_integration: ClassVar[tuple[str, ...]] = ("subtract", "zero")

    def _reset_after_integration(self) -> bool:
        return self._reset_kind in self._after_integration

    def _dynamics(self) -> tuple[float, float, float | None]:
        """(mem_decay, input_gain, syn_decay) at their current values."""
        return _decay(self.module, "beta"), 1.0, None

    # ---------------------------------------------------------------- hooks

    def _after_uninstall(self) -> None:
        """The module's attributes are already as they were between calls; undo a call that
        never reached the forward hook."""
        self._end_call()
        self._left = None

    def _incoming_mem(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        position = len(self._state_names)
        if len(args) > position:
            return args[position]
        if kwargs.get("mem") is not None:
            return kwargs["mem"]
        return self.module._buffers["mem"]

    def _pre_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        self._check_config()
        # init_hidden=True, called as module(x): the state is the buffer (the common case, fast)
        plain_call = len(args) == 1 and not kwargs
        mem: Any = module._buffers["mem"] if plain_call else self._incoming_mem(args, kwargs)
        self._call_restarted = self._restarted(mem, self._left)
        offset, previous = self.threshold_offset, self._prev_threshold
        if offset is not None or previous is not None:
            base = _base_threshold(module)
            x = args[0] if args else kwargs.get("input_")
            if previous is None or not isinstance(x, Tensor) or mem.shape != x.shape:
                previous = base  # fresh state (snnTorch zeroes it): nothing fired before
            current = base if offset is None else base + offset
            d = module.__dict__
            self._state_function = d["state_function"]
            self._next_threshold = current
            d["threshold"] = previous  # reset decision and subtraction of step t-1
            d["state_function"] = self._switching_state_function
        if not self.detach_state:
            return None
        for name in self._state_names:
            value = getattr(module, name)
            if value.requires_grad:
                setattr(module, name, value.detach())
        names = self._state_names
        if len(args) <= 1 and not kwargs:
            return None  # init_hidden=True: the state lives in the attributes detached above
        new_args = tuple(
            a.detach() if i > 0 and isinstance(a, Tensor) else a for i, a in enumerate(args)
        )
        new_kwargs = {
            k: v.detach() if k in names and isinstance(v, Tensor) else v for k, v in kwargs.items()
        }
        return new_args, new_kwargs

    def _switching_state_function(self, *args: Any) -> Any:
        """snnTorch's state_function, then the current threshold for the firing decision."""
        assert self._state_function is not None and self._next_threshold is not None
        out = self._state_function(*args)
        self.module.__dict__["threshold"] = self._next_threshold
        return out

    def _end_call(self) -> Tensor | None:
        """Undo the per-call changes; returns the threshold this call fired with (if shadowed)."""
        d = self.module.__dict__
        d.pop("threshold", None)
        if self._state_function is not None:
            d["state_function"] = self._state_function
            self._state_function = None
        current, self._next_threshold = self._next_threshold, None
        return current

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        current = self._end_call() if self._state_function is not None else None
        if output is None:  # the forward raised; always_call hooks still run
            return None
        base = _base_threshold(module)
        # Keep the threshold this call fired with while it differs from the registered one.
        self._prev_threshold = None if current is None or current is base else current
        threshold = base if current is None else current
        single = isinstance(output, Tensor)
        spk = output if single else output[0]
        mem = cast(Tensor, module._buffers["mem"])
        self._left = mem
        mask = None if self.spike_mask is None else self.mask_for(spk, lambda: mem)
        if mask is not None:
            spk = spk * mask
            output = spk if single else (spk, *output[1:])
            self._masked(spk)
        if module.spike_grad is not self._surrogate_of[0]:  # replaced after construction
            _check_spike_fn(module)
            self._surrogate_of = (module.spike_grad, _resolve_surrogate(module.spike_grad))
        psi = self._surrogate_of[1]
        s = spk.detach() if spk.requires_grad else spk
        if s.dtype != mem.dtype:
            s = s.to(mem.dtype)
        if self._on_step is not None:
            self._on_step(
                NeuronObservation(
                    s,
                    lambda: mem.unsqueeze(0),
                    lambda u: psi(u - threshold.detach()),
                    self._call_restarted,
                    one_step=True,
                )
            )
        return output if mask is not None else None

    def _masked(self, spk: Tensor) -> None:
        """Hook for neurons that keep their output spikes as state (RLeaky)."""

    # ---------------------------------------------------------------- state

    def reset(self) -> None:
        """Zero this module's state with its own ``reset_mem()`` (not ``snntorch.utils.reset``,
        which resets every instance of the class)."""
        module: Any = self.module
        module.reset_mem()
        self._prev_threshold = None
        self._left = None

    def state_dict(self) -> dict[str, Tensor]:
        """Detached copies of the state attributes (and the last effective threshold, if any)."""
        state = {name: getattr(self.module, name).detach().clone() for name in self._state_names}
        if self._prev_threshold is not None:
            state["previous_threshold"] = self._prev_threshold.detach().clone()
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore a state from :meth:`state_dict` (onto the module's current device)."""
        missing = [name for name in self._state_names if name not in state]
        if missing:
            raise StateError(
                f"{self.describe()}: state is missing {missing}; expected the keys "
                f"{list(self._state_names)} produced by state_dict()"
            )
        for name in self._state_names:
            device = getattr(self.module, name).device
            setattr(self.module, name, state[name].detach().clone().to(device))
        previous = state.get("previous_threshold")
        self._prev_threshold = None if previous is None else previous.detach().clone()
        self._left = None


class LeakyAdapter(_SnnTorchAdapter):
    """``snntorch.Leaky``: ``u[t] = clamp(beta, 0, 1) * u[t-1] + I[t]``.

    Exact spec. ``reset="zero"`` has the common form (``v = 0``, then decay and input);
    ``reset="subtract"`` subtracts the threshold after the decay
    (``u[t] = beta * u[t-1] + I[t] - threshold * s[t-1]``), which is
    ``reset_after_integration=True``. ``mem_decay`` is read at access time, so a learnable
    ``beta`` (``learn_beta=True``) gives its current value.
    """

    neuron_types: ClassVar[tuple[type, ...]] = (fw.Leaky,)
    _after_integration: ClassVar[tuple[str, ...]] = ("subtract",)


class SynapticAdapter(_SnnTorchAdapter):
    """``snntorch.Synaptic``: ``i[t] = alpha * i[t-1] + I[t]``, ``u[t] = beta * u[t-1] + i[t]``.

    Exact spec (``syn_decay=alpha``, ``mem_decay=beta``, both clamped to [0, 1]), with the reset
    after the integration for ``"subtract"`` and ``"zero"`` (``u[t] = 0`` at the step after a
    spike; the synaptic current is never reset).
    """

    neuron_types: ClassVar[tuple[type, ...]] = (fw.Synaptic,)
    _state_names: ClassVar[tuple[str, ...]] = ("syn", "mem")
    _scalar_names: ClassVar[tuple[str, ...]] = ("threshold", "beta", "alpha")

    def _dynamics(self) -> tuple[float, float, float | None]:
        return _decay(self.module, "beta"), 1.0, _decay(self.module, "alpha")


class RLeakyAdapter(_SnnTorchAdapter):
    """``snntorch.RLeaky``: ``u[t] = beta * u[t-1] + I[t] + recurrent(spk[t-1])``.

    The spec describes the neuron only; its input ``I[t]`` includes the recurrent term.
    ``module.recurrent`` is called as a module inside the neuron's forward (its hooks fire, after
    the neuron's pre-hook and before its forward hook) with the previous step's spikes: the
    ``spk`` argument, or the stored ``module.spk`` (zeros at the first step). It is an
    ``nn.Linear`` (``all_to_all=True, linear_features=N``), an ``nn.Conv2d`` (``conv2d_channels``
    and ``kernel_size``) or snnTorch's ``RecurrentOneToOne`` (``all_to_all=False``:
    ``spk * V``). Reset after the integration for ``"subtract"`` and ``"zero"``. With a spike mask
    the stored ``spk`` (next recurrent input) is the masked one.
    """

    neuron_types: ClassVar[tuple[type, ...]] = (fw.RLeaky,)
    _state_names: ClassVar[tuple[str, ...]] = ("spk", "mem")

    def _masked(self, spk: Tensor) -> None:
        self.module.spk = spk


class LapicqueAdapter(_SnnTorchAdapter):
    """``snntorch.Lapicque``: forward Euler of an RC circuit,
    ``u[t] = (1 - dt / (R C)) * u[t-1] + (dt / C) * I[t]``.

    ``mem_decay = 1 - time_step / (R * C)`` and ``input_gain = R * time_step / (R * C)`` are read
    from the ``R``, ``C`` and ``time_step`` buffers; when only ``beta`` is given, snnTorch sets
    ``R = 1`` and ``C = time_step / log(1 / beta)``, so ``mem_decay = 1 + log(beta)`` (not ``beta``)
    and ``input_gain = log(1 / beta)``. ``beta`` itself is never used in the forward pass (a
    learnable ``beta`` has no effect). Reset after the integration for ``"subtract"`` and
    ``"zero"``. Exact spec.
    """

    neuron_types: ClassVar[tuple[type, ...]] = (fw.Lapicque,)
    _scalar_names: ClassVar[tuple[str, ...]] = ("threshold", "R", "C", "time_step")

    def _dynamics(self) -> tuple[float, float, float | None]:
        r, c, dt = (_scalar(self.module, n) for n in ("R", "C", "time_step"))
        return 1.0 - dt / (r * c), r * (1.0 / (r * c)) * dt, None


class AlphaAdapter(_SnnTorchAdapter):
    """``snntorch.Alpha`` (NOT exactly expressible by NeuronSpec; ``spec.exact`` is False).

    snnTorch 1.0 computes, with ``a = clamp(alpha)``, ``b = clamp(beta)``,
    ``tau = log(a) / (log(b) - log(a)) + 1``::

        e[t] = a * e[t-1] + I[t];   h[t] = b * h[t-1] - I[t];   u[t] = tau * (e[t] + h[t])

    i.e. ``u[t] = tau * sum_{k>=1} (a^k - b^k) I[t-k]``: the membrane has no decay of its own and
    the input reaches it one step late. Without reset this equals the common form with
    ``syn_decay = a``, ``mem_decay = b`` and ``input_gain = tau * (a - b)`` delayed by one step
    (``u_alpha[t] = u_spec[t-1]``), which is what :attr:`spec` reports. Its resets are of neither
    form: ``"zero"`` (the default) zeroes ``e``, ``h`` and ``u`` at the step after a spike;
    ``"subtract"`` subtracts the threshold from ``e``, zeroes ``h`` and adds the old ``h`` to
    ``u``. ``s``, ``u`` and ``psi`` are exact. Note: ``learn_alpha=True`` fails in snnTorch
    1.0's own constructor.
    """

    neuron_types: ClassVar[tuple[type, ...]] = (fw.Alpha,)
    _state_names: ClassVar[tuple[str, ...]] = ("syn_exc", "syn_inh", "mem")
    _scalar_names: ClassVar[tuple[str, ...]] = ("threshold", "beta", "alpha")
    _exact: ClassVar[bool] = False
    _after_integration: ClassVar[tuple[str, ...]] = ()

    def _dynamics(self) -> tuple[float, float, float | None]:
        a, b = _decay(self.module, "alpha"), _decay(self.module, "beta")
        tau = math.log(a) / (math.log(b) - math.log(a)) + 1
        return b, tau * (a - b), a


ADAPTERS: tuple[type[NeuronAdapter], ...] = (
    LeakyAdapter,
    SynapticAdapter,
    RLeakyAdapter,
    LapicqueAdapter,
    AlphaAdapter,
)
