"""The contract every framework adapter fulfils.

An adapter wraps ONE neuron module of a framework (snnTorch, SpikingJelly, Norse, ...) and gives
rules a uniform, framework-free view of it, per forward call, time-first:

* ``s``   output spikes, ``[T, B, *features]`` (``T = 1`` for a single-step call),
* ``u``   the membrane value that was compared with the threshold (pre-reset),
* ``psi`` the surrogate derivative at ``u`` (``dS/du`` of the framework's own surrogate),

plus a :class:`NeuronSpec` (decays, input gain, threshold, reset kind, firing comparison) from
which rules derive their eligibility filters. ``u`` and ``psi`` are computed only when a rule
reads them, so a rule that needs spikes alone (STDP) pays nothing for them.

Adapters also provide the writes competition rules need (a per-neuron threshold offset and a
spike mask on the output), detaching the neuron state between calls (online rules), and
resetting / saving / restoring the neuron state, which the frameworks leave out of
``state_dict()``.

The pre-synaptic input ``x`` is observed at the synapse by :mod:`plasticity_plugins.attach`, not
here, because the synapse is a plain ``torch.nn`` module in every framework.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from plasticity_plugins.errors import StateError

ResetKind = Literal["zero", "subtract", "none"]

#: A fixed mask, or a function ``(spikes, excess) -> mask`` of one call's (detached) output
#: spikes and membrane excess over the threshold ``u - (threshold + offset)``.
SpikeMask = Tensor | Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class NeuronSpec:
    """Sub-threshold dynamics of a neuron module, in the frameworks' common discrete form.

    One time step of every supported neuron is, with ``I[t]`` the neuron's input::

        i[t] = syn_decay * i[t-1] + I[t]                  (only when syn_decay is not None)
        u[t] = rest + mem_decay * (v[t-1] - rest) + input_gain * i[t]   (i = I without syn_decay)
        s[t] = H(u[t] - threshold)   (u >= threshold when fire_on_equal)
        v[t] = reset(u[t], s[t])     (zero: reset_value, subtract: u - threshold, none: u)

    Some neurons (most snnTorch ones) reset AFTER the decay and the new input instead; with
    ``reset_after_integration`` the membrane is::

        w[t] = rest + mem_decay * (u[t-1] - rest) + input_gain * i[t]
        u[t] = w[t] - threshold * s[t-1]                        (subtract)
        u[t] = (1 - s[t-1]) * w[t] + s[t-1] * reset_value       (zero)
        u[t] = w[t]                                             (none)

    For ``"subtract"`` the two forms agree only when ``mem_decay == 1``; for ``"zero"`` the second
    also discards the input of the step after a spike.

    Attributes:
        framework: the framework's import name, e.g. ``"snntorch"``.
        neuron: the neuron class name, e.g. ``"Leaky"``.
        mem_decay: membrane decay per step (1 for a non-leaky integrate-and-fire neuron).
        input_gain: factor on the input current (Norse: ``dt * tau_mem_inv``; else 1).
        threshold: firing threshold (without any per-neuron offset).
        reset: how the membrane is reset after a spike.
        fire_on_equal: True when the neuron fires at ``u >= threshold`` (SpikingJelly),
            False for ``u > threshold`` (snnTorch, Norse).
        syn_decay: decay of a synaptic current (snnTorch Synaptic, Norse LIFCell), else None.
        reset_value: the membrane value after a ``"zero"`` reset.
        rest: the value the membrane decays towards (Norse ``v_leak``, SpikingJelly's hard-reset
            ``v_reset`` for LIF neurons); 0 for most neurons.
        reset_after_integration: True for the second form above.
        exact: False when the neuron's dynamics fit neither form (snnTorch ``Alpha``); the other
            fields are then the approximation its adapter documents. ``s``, ``u`` and ``psi``
            are exact regardless.
    """

    framework: str
    neuron: str
    mem_decay: float
    input_gain: float
    threshold: float
    reset: ResetKind
    fire_on_equal: bool
    syn_decay: float | None = None
    reset_value: float = 0.0
    rest: float = 0.0
    reset_after_integration: bool = False
    exact: bool = True


class NeuronObservation:
    """What one forward call of a neuron module produced, time-first ``[T, B, *features]``.

    ``u`` and ``psi`` are evaluated on first access and cached; so is ``s`` of a one-step
    observation (its ``[1, B, *features]`` view: a rule that reads no spikes does not pay for
    the view at every step).

    Args:
        s: output spikes (after any spike mask), ``[T, B, *features]``, or the one step
            ``[B, *features]`` of a single-step call with ``one_step=True``.
        membrane: computes the pre-reset membrane ``u``, ``[T, B, *features]``.
        surrogate: maps ``u`` to the surrogate derivative ``psi`` (threshold offset included).
        restarted: the call did not continue from the state the module's previous call left:
            the framework reset it (SpikingJelly ``functional.reset_net``, snnTorch
            ``reset_mem`` / ``utils.reset``) or a fresh state was passed in (Norse
            ``state=None``, snnTorch ``init_leaky()``). False on the first call after the
            adapter's own reset or load.
        one_step: ``s`` is one step without its time axis.
    """

    # slots and hand-written caches: one observation is made per neuron and time step
    __slots__ = ("_membrane", "_one_step", "_psi", "_s", "_spikes", "_surrogate", "_u", "restarted")

    def __init__(
        self,
        s: Tensor,
        membrane: Callable[[], Tensor],
        surrogate: Callable[[Tensor], Tensor],
        restarted: bool = False,
        *,
        one_step: bool = False,
    ) -> None:
        self._spikes = s
        self._one_step = one_step
        self._s = None if one_step else s
        self._membrane = membrane
        self._surrogate = surrogate
        self.restarted = restarted
        self._u: Tensor | None = None
        self._psi: Tensor | None = None

    @property
    def s(self) -> Tensor:
        """Output spikes, ``[T, B, *features]``."""
        s = self._s
        if s is None:
            s = self._s = self._spikes.unsqueeze(0)
        return s

    @property
    def steps(self) -> int:
        """Number of time steps in the call (``T``)."""
        return 1 if self._one_step else int(self._spikes.shape[0])

    @property
    def batch(self) -> int:
        """Batch size (``B``)."""
        return int(self._spikes.shape[0 if self._one_step else 1])

    @property
    def u(self) -> Tensor:
        """Pre-reset membrane potential, detached."""
        u = self._u
        if u is None:
            u = self._u = self._membrane().detach()
        return u

    @property
    def psi(self) -> Tensor:
        """Surrogate derivative ``dS/du`` evaluated at :attr:`u`, detached."""
        psi = self._psi
        if psi is None:
            psi = self._psi = self._surrogate(self.u).detach()
        return psi


def surrogate_by_autograd(spike_fn: Callable[[Tensor], Tensor], centred: Tensor) -> Tensor:
    """Surrogate derivative of a framework's own spike function, by autograd.

    Args:
        spike_fn: the framework's spike function of ``u - threshold``.
        centred: ``u - threshold`` (any shape).

    Returns:
        ``d spike_fn / d centred`` elementwise (the spike functions are elementwise).
    """
    with torch.enable_grad():
        v = centred.detach().clone().requires_grad_(True)
        out = spike_fn(v)
        (grad,) = torch.autograd.grad(out.sum(), v)
    return grad


_HookFn = Callable[..., Any]


def eager_hook(hook: _HookFn) -> _HookFn:
    """``hook``, run eagerly by :func:`torch.compile`: a model compiled with a handle attached
    breaks its graph around the hook instead of tracing the library's bookkeeping (Python
    state, C++ ops), and learns exactly as it does uncompiled.

    Uncompiled, the hook itself runs (~0.2 us more per call): :func:`torch.compiler.disable`
    is only entered under compilation, because switching the frame evaluation at every call
    costs several microseconds per step; its copy of the hook is made there too, so that a
    process that never compiles does not import ``torch._dynamo`` (~2 s). Every forward
    (pre-)hook the library registers is one.

    Example:
        >>> calls = []
        >>> layer = nn.Linear(2, 2)
        >>> _ = layer.register_forward_hook(eager_hook(lambda m, a, o: calls.append(1)))
        >>> _ = torch.compile(layer, backend="eager")(torch.ones(1, 2))
        >>> _ = layer(torch.ones(1, 2))
        >>> calls
        [1, 1]
    """
    # False uncompiled, constant True while dynamo traces (one call, where is_compiling makes two)
    is_compiling = getattr(torch.compiler, "is_dynamo_compiling", torch.compiler.is_compiling)
    skipped: list[_HookFn] = []  # the disabled copy, made on first use (it imports dynamo)

    @functools.wraps(hook)
    def run(*args: Any, **kwargs: Any) -> Any:
        if is_compiling():  # constant True while dynamo traces: a graph break, then eager
            if not skipped:
                skipped.append(torch.compiler.disable(hook))
            return skipped[0](*args, **kwargs)
        return hook(*args, **kwargs)

    return run


class NeuronAdapter(abc.ABC):
    """Uniform view of one framework neuron module (see the module docstring).

    Subclasses set :attr:`framework` and :attr:`neuron_types`, validate the module's
    configuration in ``__init__`` (raising
    :class:`~plasticity_plugins.errors.UnsupportedModuleError` with what is supported) and
    implement the abstract methods.

    Lifecycle: ``install(on_step)`` registers the subclass's ``_pre_hook`` (a forward pre-hook
    with keyword arguments) and ``_post_hook`` (a forward hook that also runs when the forward
    raises); after every forward call of the module ``on_step(observation)`` is called;
    ``uninstall()`` removes both hooks and calls ``_after_uninstall()``, which restores whatever
    the adapter changed (threshold, ...), leaving the module as it was. A subclass's
    ``_pre_hook`` and ``_post_hook`` become :func:`eager_hook` s when the class is defined.
    """

    framework: ClassVar[str]
    neuron_types: ClassVar[tuple[type, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # wrapped on the class (not on the bound method at install) so that a copy of an
        # installed module still calls its own copy of the adapter
        for name in ("_pre_hook", "_post_hook"):
            if name in vars(cls):
                setattr(cls, name, eager_hook(vars(cls)[name]))

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.detach_state = False
        self.threshold_offset: Tensor | None = None
        self.spike_mask: SpikeMask | None = None
        self._handles: list[RemovableHandle] = []
        self._on_step: Callable[[NeuronObservation], None] | None = None
        self._spec_cache: tuple[NeuronSpec, tuple[Any, ...], tuple[int, ...]] | None = None

    @classmethod
    def handles(cls, module: nn.Module) -> bool:
        """Whether this adapter class is the one for ``module``'s exact type."""
        return type(module) in cls.neuron_types

    @classmethod
    def is_neuron(cls, module: nn.Module) -> bool:
        """Whether ``module`` is a neuron of this adapter's framework, supported or not.

        Frameworks override this with their neuron base class, so that attach() reports
        unsupported neurons instead of ignoring them.
        """
        return cls.handles(module)

    @property
    @abc.abstractmethod
    def spec(self) -> NeuronSpec:
        """The neuron's :class:`NeuronSpec`."""

    @property
    @abc.abstractmethod
    def multistep(self) -> bool:
        """True when one forward call processes a whole ``[T, B, ...]`` sequence."""

    def _cached_spec(self, sources: tuple[Any, ...], build: Callable[[], NeuronSpec]) -> NeuronSpec:
        """``build()``, rebuilt only when one of ``sources`` (the values the spec is read from)
        changed: another object, or a tensor modified in place (its version counter moved).

        Specs are read at every step; building one converts tensors to floats.
        """
        versions = tuple(v._version if isinstance(v, Tensor) else -1 for v in sources)
        cache = self._spec_cache
        if (
            cache is not None
            and cache[2] == versions
            and len(cache[1]) == len(sources)
            and all(a is b for a, b in zip(cache[1], sources, strict=True))
        ):
            return cache[0]
        spec = build()
        self._spec_cache = (spec, sources, versions)
        return spec

    @staticmethod
    def _restarted(incoming: Any, left: Any) -> bool:
        """Whether a call's incoming state is not the state the previous call ``left`` (None:
        no call since the adapter's reset, load or install): the same object, or a tensor
        sharing its storage (``detach()``), continues it."""
        if left is None or incoming is left:
            return False
        return not (
            isinstance(incoming, Tensor)
            and isinstance(left, Tensor)
            and incoming.shape == left.shape
            and incoming.data_ptr() == left.data_ptr()
        )

    def install(self, on_step: Callable[[NeuronObservation], None]) -> None:
        """Register the pre-hook and the forward hook; ``on_step`` runs after every call."""
        if self._handles:
            raise StateError(f"{self.describe()}: the adapter is already installed")
        self._on_step = on_step
        self._handles = [
            self.module.register_forward_pre_hook(self._pre_hook, with_kwargs=True),
            self.module.register_forward_hook(self._post_hook, always_call=True),
        ]

    def uninstall(self) -> None:
        """Remove both hooks and restore everything the adapter changed."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._on_step = None
        self._after_uninstall()

    def _after_uninstall(self) -> None:
        """Restore what the adapter changed on the module (nothing by default)."""
        return None

    def _pre_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Forward pre-hook (``with_kwargs=True``) that :meth:`install` registers: may return
        replaced arguments. Adapters that use the default :meth:`install` implement it."""
        raise NotImplementedError(f"{type(self).__name__} implements no _pre_hook")

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        """Forward hook (``always_call=True``; ``output`` is None when the forward raised) that
        :meth:`install` registers: calls ``on_step`` and may return a replaced output."""
        raise NotImplementedError(f"{type(self).__name__} implements no _post_hook")

    @abc.abstractmethod
    def reset(self) -> None:
        """Reset the neuron's state to the framework's initial state (start of a sequence)."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Tensor]:
        """The neuron's hidden state (membrane, synaptic current, ...), detached copies."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore a state produced by :meth:`state_dict`."""

    def set_threshold_offset(self, offset: Tensor | None) -> None:
        """Add a per-neuron offset (shape ``features`` or broadcastable) to the threshold.

        ``None`` removes it. Used by adaptive-threshold (homeostatic theta) rules.
        """
        self.threshold_offset = offset

    def set_spike_mask(self, mask: SpikeMask | None) -> None:
        """Multiply the module's output spikes by ``mask`` (broadcastable to one call's output).

        ``mask`` is a tensor, or a function called at every forward call with that call's
        output spikes and the membrane's excess over the threshold, ``u - (threshold +
        offset)`` (both detached, ``[B, *features]`` single-step, ``[T, B, *features]``
        multi-step), returning the mask for that call, e.g.
        :func:`~plasticity_plugins.kernels.competition.one_spike_per_step`.
        ``None`` removes it. Used by k-winners-take-all, lateral inhibition and fire-once rules.
        The neuron's own reset still follows its unmasked spikes; downstream modules and the
        observation see the masked ones.
        """
        if mask is not None and not isinstance(mask, Tensor) and not callable(mask):
            raise TypeError(
                f"{self.describe()}: a spike mask is a tensor, a function (spikes, excess) -> "
                f"mask or None, got {type(mask).__name__}"
            )
        self.spike_mask = mask

    def mask_for(self, spikes: Tensor, membrane: Callable[[], Tensor]) -> Tensor | None:
        """The mask for one call's output ``spikes`` on their device and dtype (None: no mask).

        Args:
            spikes: the call's output spikes (unmasked).
            membrane: computes the call's pre-reset membrane (read only by a mask function).
        """
        mask = self.spike_mask
        if mask is None:
            return None
        if not isinstance(mask, Tensor):
            threshold: Tensor | float = self.spec.threshold
            if self.threshold_offset is not None:
                threshold = self.threshold_offset + threshold
            excess = membrane().detach().reshape(spikes.shape) - threshold
            mask = mask(spikes.detach(), excess)
        if mask.dtype != spikes.dtype or mask.device != spikes.device:
            mask = mask.to(device=spikes.device, dtype=spikes.dtype)
        return mask

    def describe(self) -> str:
        """A one-line description for error messages and listings."""
        return f"{self.framework}.{type(self.module).__name__}"
