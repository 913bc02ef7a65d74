"""What a rule sees of one (synapse, neuron) pair, and where its updates land."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..adapters.base import NeuronObservation, NeuronSpec
from ..errors import UnsupportedModuleError
from ..kernels.stdp import ConvGeometry

RuleState = dict[str, Tensor]


class UpdateSink:
    """Where a rule's weight updates land: ``param.grad``, as ``-dw`` (times the AMP scale).

    Rules call :meth:`accumulator` for the tensor to add into and scale what they add by
    :attr:`factor`, so ``torch.optim.SGD(lr=1)`` applies exactly ``dw``.

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
    def factor(self) -> float:
        """Scale of ``dw`` when added to :meth:`accumulator`: ``-1`` times the AMP scale."""
        if self.grad_scaler is None:
            return -1.0
        return -float(self.grad_scaler.get_scale())  # type: ignore[attr-defined]

    def accumulator(self, param: Tensor) -> Tensor:
        """The tensor a rule adds ``factor * dw`` into (``param.grad``, created as zeros)."""
        if self.distributed:
            if param not in self._pending:
                self._pending[param] = torch.zeros_like(param)
            return self._pending[param]
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        return param.grad

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


@dataclass
class PairView:
    """One forward call of a (synapse, neuron) pair, as handed to :meth:`LocalRule.step`.

    Attributes:
        name: ``"synapse_name->neuron_name"``.
        synapse: the synapse module (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``).
        spec: the neuron's :class:`NeuronSpec`.
        x: pre-synaptic input, time-first ``[T, B, *in]``.
        neuron: the neuron's observation (``s``, ``u``, ``psi``, ``[T, B, *features]``).
        to_synapse_output: maps a ``[T, B, *features]`` tensor in the neuron's layout to the
            synapse's output layout ``[T, B, *out]`` (reshape through Flatten; through pooling,
            the pooling's own backward, so max-pooling routes to the argmax).
        sink: where updates land.
    """

    name: str
    synapse: nn.Module
    spec: NeuronSpec
    x: Tensor
    neuron: NeuronObservation
    to_synapse_output: Callable[[Tensor], Tensor]
    sink: UpdateSink


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
