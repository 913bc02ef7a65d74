"""What a rule sees of one (synapse, neuron) pair, and where its updates land."""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..adapters.base import NeuronAdapter, NeuronObservation, NeuronSpec
from ..errors import StateError, UnsupportedModuleError
from ..kernels.synapse import ConvGeometry

RuleState = dict[str, Tensor]


class UpdateSink:
    """Where a rule's weight updates land: ``param.grad`` (times the AMP scale).

    Rules call :meth:`accumulator` for the tensor to add into. A Hebbian rule scales its
    ``dw`` by :attr:`hebbian_factor` (``-1``: ``-dw`` lands in ``.grad``, so
    ``torch.optim.SGD(lr=1)`` applies exactly ``dw``); a rule that estimates a loss gradient
    scales it by :attr:`gradient_factor` (``+1``).

    Under ``torch.distributed`` (world size > 1) updates collect in a private buffer instead,
    and :meth:`sync` averages them across ranks once (one all-reduce per parameter) and adds
    them to ``.grad``. DDP's reducer never sees writes made outside backward, so this is the
    rule's job; the handle calls :meth:`sync` before each step of an optimizer handed to
    ``attach`` (or call ``handle.sync()`` yourself).

    Args:
        grad_scaler: an AMP ``GradScaler``: updates are multiplied by its current scale, as
            backward's gradients are, so its ``unscale_`` / ``step`` leaves them right.
        distributed: collect and average across ranks as described above.
    """

    def __init__(self, grad_scaler: object | None = None, distributed: bool = False) -> None:
        self.grad_scaler = grad_scaler
        self.distributed = distributed
        self._pending: dict[Tensor, Tensor] = {}

    @property
    def gradient_factor(self) -> float:
        """Scale of a loss-gradient estimate added to :meth:`accumulator`: the AMP scale or 1."""
        if self.grad_scaler is None:
            return 1.0
        return float(self.grad_scaler.get_scale())  # type: ignore[attr-defined]

    @property
    def hebbian_factor(self) -> float:
        """Scale of a Hebbian ``dw`` added to :meth:`accumulator`: ``-gradient_factor``."""
        return -self.gradient_factor

    def accumulator(self, param: Tensor) -> Tensor:
        """The tensor a rule adds ``factor * dw`` into (``param.grad``, created as zeros)."""
        if self.distributed:
            if param not in self._pending:
                self._pending[param] = torch.zeros_like(param)
            return self._pending[param]
        grad = param.grad
        if grad is None:
            grad = param.grad = torch.zeros_like(param)
        return grad

    def sync(self) -> None:
        """Average pending updates across ranks and add them to ``.grad`` (no-op otherwise)."""
        if not self._pending:
            return
        import torch.distributed as dist

        world = dist.get_world_size()
        for param, pending in self._pending.items():
            dist.all_reduce(pending, op=dist.ReduceOp.SUM)
            pending.div_(world)
            if param.grad is None:
                param.grad = pending
            else:
                param.grad.add_(pending)
        self._pending = {}


class PairView:
    """One forward call of a (synapse, neuron) pair, as handed to :meth:`LocalRule.step`.

    Attributes:
        name: ``"synapse_name->neuron_name"``.
        synapse: the synapse module (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``).
        spec: the neuron's :class:`NeuronSpec` (given, or read on first access from a
            zero-argument callable such as ``lambda: adapter.spec``: rules that never read it
            do not pay for it at every step).
        x: pre-synaptic input, time-first ``[T, B, *in]`` (given as the one step ``[B, *in]``
            with ``one_step=True``: the view with its time axis is made on first access).
        neuron: the neuron's observation (``s``, ``u``, ``psi``, ``[T, B, *features]``).
        to_synapse_output: maps a ``[T, B, *features]`` tensor in the neuron's layout to the
            synapse's output layout ``[T, B, *out]`` (reshape through Flatten; through pooling,
            the pooling's own backward, so max-pooling routes to the argmax).
        sink: where updates land.
        first_step: index, since ``handle.reset()``, of this call's first time step.
        total_steps: the sequence length given to ``handle.reset(steps=...)``, else None.
        adapter: the neuron's adapter, for rules that write to the neuron (a threshold offset,
            a spike mask); None where the caller does not provide it.
        one_step: ``x`` is given without its time axis (a single-step call).
    """

    # slots: one view is made per pair and time step
    __slots__ = (
        "_input",
        "_one_step",
        "_spec",
        "_x",
        "adapter",
        "first_step",
        "name",
        "neuron",
        "sink",
        "synapse",
        "to_synapse_output",
        "total_steps",
    )

    def __init__(
        self,
        name: str,
        synapse: nn.Module,
        spec: NeuronSpec | Callable[[], NeuronSpec],
        x: Tensor,
        neuron: NeuronObservation,
        to_synapse_output: Callable[[Tensor], Tensor],
        sink: UpdateSink,
        first_step: int = 0,
        total_steps: int | None = None,
        adapter: NeuronAdapter | None = None,
        one_step: bool = False,
    ) -> None:
        self.name = name
        self.synapse = synapse
        self._spec = spec
        self._input = x
        self._one_step = one_step
        self._x = None if one_step else x
        self.neuron = neuron
        self.to_synapse_output = to_synapse_output
        self.sink = sink
        self.first_step = first_step
        self.total_steps = total_steps
        self.adapter = adapter

    @property
    def spec(self) -> NeuronSpec:
        """The neuron's :class:`NeuronSpec` (read once per view)."""
        if not isinstance(self._spec, NeuronSpec):
            self._spec = self._spec()
        return self._spec

    @property
    def x(self) -> Tensor:
        """Pre-synaptic input, ``[T, B, *in]``."""
        x = self._x
        if x is None:
            x = self._x = self._input.unsqueeze(0)
        return x

    def spike_pair(self) -> tuple[Tensor, Tensor]:
        """``(x, s)``: the pre-synaptic input and the neuron's spikes mapped to the synapse's
        output layout (:attr:`to_synapse_output`) in the input's dtype, ``[T, B, *in]`` and
        ``[T, B, *out]``: the two factors of every STDP window."""
        pre = self.x
        post = self.to_synapse_output(self.neuron.s)
        return pre, post if post.dtype == pre.dtype else post.to(pre.dtype)

    @property
    def steps(self) -> int:
        """Number of time steps in this call (``T``)."""
        return 1 if self._one_step else int(self._input.shape[0])

    def __repr__(self) -> str:
        return f"PairView({self.name!r}, x={tuple(self.x.shape)}, first_step={self.first_step})"


def conv_geometry(synapse: nn.Module) -> ConvGeometry | None:
    """The :class:`ConvGeometry` of a Conv1d / Conv2d synapse, None for Linear."""
    if isinstance(synapse, nn.Linear):
        return None
    assert isinstance(synapse, (nn.Conv1d, nn.Conv2d))
    kernel = tuple(synapse.kernel_size)
    dilation = tuple(synapse.dilation)
    padding = synapse.padding
    if padding == "valid":
        padding = (0,) * len(kernel)
    elif padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if any(t % 2 for t in total):
            raise UnsupportedModuleError(
                f"{synapse}: padding='same' with an even kernel pads asymmetrically; "
                "supported: explicit integer padding or 'same' with odd kernels"
            )
        padding = tuple(t // 2 for t in total)
    return ConvGeometry(
        stride=tuple(synapse.stride),
        padding=tuple(padding),  # type: ignore[arg-type]
        dilation=dilation,
        groups=synapse.groups,
    )


SYNAPSE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


class LocalRule(abc.ABC):
    """A learning rule that attach() wires to (synapse, neuron) pairs.

    A rule object holds only hyper-parameters and is shared by every pair it is attached to;
    the per-pair state (traces, ...) is a ``dict[str, Tensor]`` the handle keeps, saves and
    resets. Subclasses implement :meth:`step`.
    """

    #: Online rules set this: the neuron's state is detached between forward calls.
    detach_neuron_state: bool = False

    def check_synapse(self, name: str, synapse: nn.Module) -> None:
        """Raise :class:`UnsupportedModuleError` if this rule cannot update ``synapse``."""
        if not isinstance(synapse, SYNAPSE_TYPES):
            raise UnsupportedModuleError(
                f"{type(self).__name__} cannot update {name!r} ({type(synapse).__name__}); "
                "supported synapses: nn.Linear, nn.Conv1d, nn.Conv2d and their subclasses"
            )
        mode = getattr(synapse, "padding_mode", "zeros")
        if mode != "zeros":
            raise UnsupportedModuleError(
                f"{type(self).__name__} cannot update {name!r}: padding_mode={mode!r}; "
                "supported: padding_mode='zeros'"
            )
        if not isinstance(synapse, nn.Linear):
            conv_geometry(synapse)

    @abc.abstractmethod
    def step(self, view: PairView, state: RuleState) -> None:
        """Process one forward call of a pair; update ``state`` in place, write to the sink."""

    def after_optimizer_step(self, synapse: nn.Module, state: RuleState) -> None:
        """Project the synapse's parameters after each step of the optimizer handed to attach.

        Bounded rules clip or normalise weights here (a no-op by default).
        """
        return None

    #: State entries that survive ``handle.reset()`` (fixed random matrices, ...).
    persistent_state: tuple[str, ...] = ()

    def reset_state(self, state: RuleState) -> None:
        """Clear a pair's state at the start of a sequence, keeping :attr:`persistent_state`."""
        for key in [k for k in state if k not in self.persistent_state]:
            del state[key]


class GradientRule(LocalRule):
    """A rule whose weight update is a learning signal times an eligibility (three factors).

    Forward calls go to :meth:`step`, which keeps the eligibility factors of the call; the
    learning signal of the same call arrives through ``handle.backward(...)`` as
    ``delta = dLoss/ds`` (the neuron's output spikes, neuron layout ``[T, B, *features]``) and
    goes to :meth:`learn`. The neuron state is detached between forward calls, so no gradient
    crosses time steps.

    Attributes:
        signal: how ``delta`` is obtained for this rule's pairs: ``"bp"`` (the loss's
            gradient, passed down between layers within the step through each layer's
            surrogate and weights), ``"dfa"`` (the top layer's error through a fixed random
            matrix per layer) or ``"local"`` (from :meth:`local_delta`, a per-layer loss).
    """

    detach_neuron_state = True
    signal: str = "bp"

    @abc.abstractmethod
    def learn(self, view: PairView, state: RuleState, delta: Tensor) -> Tensor | None:
        """Accumulate the weight (and bias) gradient for learning signal ``delta``.

        Returns:
            For ``signal="bp"``, the signal to pass down to the synapse's input, in the neuron
            layout (``delta * psi``); else None.
        """

    def feedback_delta(self, view: PairView, state: RuleState, error: Tensor) -> Tensor:
        """``signal="dfa"`` rules: the learning signal from the top layer's ``error``."""
        raise NotImplementedError(f"{type(self).__name__} has no feedback alignment signal")

    def local_delta(
        self, view: PairView, state: RuleState, spikes: Tensor, target: Tensor
    ) -> Tensor | None:
        """``signal="local"`` rules: the per-layer learning signal for ``target``."""
        raise NotImplementedError(f"{type(self).__name__} has no local learning signal")


def pair_seed(name: str) -> int:
    """A per-pair seed offset that is the same in every run (unlike ``hash``)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 1_000_003


def sequence_state(
    view: PairView, state: RuleState, wanted: dict[str, tuple[Tensor, float | bool]], rule: str
) -> dict[str, Tensor]:
    """The state entries of the running sequence, created when absent.

    Args:
        view: the call (for messages).
        state: the pair's state.
        wanted: ``{name: (sequence, fill)}`` with one of the call's time-first sequences
            ``[T, B, *features]``: an entry absent from ``state`` is created as one step of it
            filled with ``fill`` (bool when ``fill`` is a bool); a stored entry whose shape
            differs from one step's (a new batch size without ``handle.reset()``) raises
            :class:`StateError`.
        rule: the rule's name, for messages.

    Returns:
        ``{name: tensor}`` (new entries are not written to ``state``).
    """
    out = {}
    for key, (sequence, fill) in wanted.items():
        stored = state.get(key)
        if stored is None:
            dtype = torch.bool if isinstance(fill, bool) else None
            out[key] = torch.full_like(sequence[0], fill, dtype=dtype)
        elif stored.shape != sequence.shape[1:]:
            raise StateError(
                f"{rule} on {view.name}: this call needs {key} of shape "
                f"{tuple(sequence.shape[1:])} but the running sequence has "
                f"{tuple(stored.shape)}; call handle.reset() before a sequence with another "
                "batch size or input size (or after loading a state saved from another model)"
            )
        else:
            out[key] = stored
    return out
