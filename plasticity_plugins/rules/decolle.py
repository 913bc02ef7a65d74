"""DECOLLE: deep continuous local learning (Kaiser, Mostafa & Neftci, arXiv 1811.10766)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError, StateError
from ..kernels._extension_build import cpu_ops_accept
from ..kernels.synapse import outer_accumulate_
from ..kernels.traces import filtered_input_step
from .base import GradientRule, PairView, RuleState, conv_geometry, pair_seed


def decolle_surrogate(centred: Tensor) -> Tensor:
    """DECOLLE's "fast sigmoid" surrogate ``1 / (10 |x| + 1)^2`` of ``x = u - threshold``.

    Example:
        >>> decolle_surrogate(torch.tensor([0.0, 0.1, -0.1]))
        tensor([1.0000, 0.2500, 0.2500])
    """
    return torch.reciprocal((10.0 * centred.abs() + 1.0) ** 2)


def _compiled_applies(spikes: Tensor, readout: Tensor) -> bool:
    """Whether the readout work runs through the C++ ops of ``cuda/decolle.cpp``: CPU tensors,
    float32 / float64, and the library built (else the torch ops, the fallback and oracle)."""
    return cpu_ops_accept(spikes, readout)


@dataclass(frozen=True)
class DECOLLE(GradientRule):
    """DECOLLE on a native framework model: a fixed random readout and a local loss per layer.

    Per layer ``l`` and time step, with the framework neuron computing ``s`` and ``u``::

        P[t]  = the synapse input filtered by the neuron's own sub-threshold kernel
                (one exponential for a Leaky-type neuron, two for a Synaptic-type one, from
                its NeuronSpec; the reset is ignored, as in DECOLLE)
        r[t]  = G_l dropout(s[t])         G_l fixed, uniform in +-readout_scale / sqrt(fan_in)
        L_l   = SmoothL1(r[t], onehot(target))
        grad W_l += [(G_l^T dL_l/dr) * SG(u)] (x) P[t]      grad b_l += (G_l^T dL_l/dr) * SG(u)

    Gradients stop between layers and between steps: layer l's loss reaches only W_l and b_l.
    The readouts are never trained; they are created on the first step (seeded by
    ``readout_seed`` and the pair's name) and saved with ``handle.state_dict()``.

    Semantics:
        * Reduction: SmoothL1 averages over the batch and classes, as DECOLLE's loss does;
          the per-step gradients are summed over the steps handed to ``handle.backward``
          and over convolution positions. Steps before ``burn_in`` (counted from
          ``handle.reset()``) carry no learning signal.
        * Timing: ``P[t]`` includes the input of step t; the readout sees the spikes of t.
        * Sign: ``.grad`` receives ``+dL/dW`` (times the AMP scale with a GradScaler).
        * Prediction: per layer, ``argmax r`` (that of ``sigmoid(r)`` without its float
          saturation) per step after burn-in, majority vote over time
          (``handle.predictions()``).
        * Computation: on CPU (float32 / float64) the readout's error, the dropout and the
          surrogate run in one C++ pass per layer and step (``cuda/decolle.cpp``; its dropout
          masks come from a generator seeded by torch's, so ``torch.manual_seed`` fixes them,
          but they are not the masks ``torch.rand`` would give); set
          ``PLASTICITY_PLUGINS_CPU_EXT=0`` for the torch ops, which give the same gradients
          without dropout.

    Args:
        num_classes: size of the readouts.
        readout_scale: ``lc_ampl``; 0.5 (N-MNIST config) by default.
        dropout: dropout on the spikes before the readout during learning.
        burn_in: steps after each reset without a learning signal.
        surrogate: ``"decolle"`` (``1/(10|u - thr| + 1)^2``) or ``"framework"``.
        readout_seed: seed of the readout matrices.

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.rules import DECOLLE
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))
        >>> handle = plasticity_plugins.attach(net, DECOLLE(num_classes=2))
        >>> for t in range(3):
        ...     _ = net(torch.ones(2, 4))
        ...     handle.backward(target=torch.tensor([0, 1]))
        >>> net[0].weight.grad.shape
        torch.Size([3, 4])
        >>> handle.detach()
    """

    num_classes: int = 10
    readout_scale: float = 0.5
    dropout: float = 0.5
    burn_in: int = 0
    surrogate: Literal["decolle", "framework"] = "decolle"
    readout_seed: int = 0
    persistent_state: tuple[str, ...] = ("readout",)
    signal: Literal["local"] = "local"

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"DECOLLE: num_classes must be >= 2, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DECOLLE: dropout must be in [0, 1), got {self.dropout}")
        if self.burn_in < 0:
            raise ValueError(f"DECOLLE: burn_in must be >= 0 steps, got {self.burn_in}")
        if self.surrogate not in ("decolle", "framework"):
            raise ValueError(
                f"DECOLLE: surrogate must be 'decolle' or 'framework', got {self.surrogate!r}"
            )

    def step(self, view: PairView, state: RuleState) -> None:
        """Filter this call's input into the eligibility ``P`` and keep it for learn()."""
        spec = view.spec
        x = view.x
        spikes = view.neuron.s
        readout = self.readout(view, state, spikes)  # checked before any state changes
        membrane = state.get("eligibility")
        if membrane is None:
            membrane = torch.zeros_like(x[0])
        elif membrane.shape != x.shape[1:]:
            raise StateError(
                f"DECOLLE on {view.name}: input {tuple(x.shape[1:])} does not match the running "
                f"sequence's {tuple(membrane.shape)}; call handle.reset() between sequences"
            )
        synaptic = state.get("synaptic_eligibility")
        filter_step = functools.partial(
            filtered_input_step,
            mem_decay=spec.mem_decay,
            syn_decay=spec.syn_decay,
            mem_gain=spec.input_gain,
        )
        if x.shape[0] == 1:  # a single-step network's path: no loop, no stacked copy
            synaptic, membrane = filter_step(synaptic, membrane, x[0])
            pending = membrane.unsqueeze(0)
        else:
            filtered = []
            for x_t in x:
                synaptic, membrane = filter_step(synaptic, membrane, x_t)
                filtered.append(membrane)
            pending = torch.stack(filtered)
        state["eligibility"] = membrane
        if synaptic is not None:
            state["synaptic_eligibility"] = synaptic
        # Kept until learn() consumes them.
        state["pending_eligibility"] = pending
        # what the surrogate derivative is computed from when the learning signal arrives:
        # psi itself, or the membrane for DECOLLE's own surrogate
        state["pending_surrogate"] = (
            view.neuron.psi if self.surrogate == "framework" else view.neuron.u
        )
        start = self._first_counted(view)
        if start < view.steps:
            votes = state.get("votes")
            if votes is None:
                votes = spikes.new_zeros(spikes.shape[1], self.num_classes)
                state["votes"] = votes
            counted = spikes[start:].reshape(-1, readout.shape[1])  # [steps counted * B, N]
            if _compiled_applies(counted, readout):
                torch.ops.plasticity_plugins_cpu.decolle_votes_(votes, counted, readout)
            else:
                scores = (counted @ readout.T).reshape(-1, spikes.shape[1], self.num_classes)
                winners = scores.argmax(-1)  # [steps counted, B]
                ones = torch.ones((), dtype=votes.dtype, device=votes.device)
                votes.scatter_add_(1, winners.T, ones.expand(winners.T.shape))

    def _first_counted(self, view: PairView) -> int:
        """Index, within this call, of the first step after burn-in (``steps``: none)."""
        return min(view.steps, max(0, self.burn_in - view.first_step))

    def readout(self, view: PairView, state: RuleState, like: Tensor) -> Tensor:
        """The pair's fixed readout ``G`` ``[num_classes, n_features]`` (created on first use)."""
        readout = state.get("readout")
        n_features = math.prod(view.neuron.s.shape[2:])
        if readout is not None and readout.shape != (self.num_classes, n_features):
            raise StateError(
                f"DECOLLE on {view.name}: its readout is {tuple(readout.shape)} but this layer "
                f"needs ({self.num_classes} classes, {n_features} features): the handle state "
                "was loaded from another model (the readout is kept across handle.reset())"
            )
        if readout is None:
            generator = torch.Generator().manual_seed(self.readout_seed + pair_seed(view.name))
            bound = self.readout_scale / math.sqrt(n_features)
            readout = (
                torch.rand(self.num_classes, n_features, generator=generator) * 2 - 1
            ) * bound
            readout = readout.to(like.device, like.dtype)
            state["readout"] = readout
        return readout

    def _check_target(self, view: PairView, target: Tensor, batch: int) -> None:
        if target.shape != (batch,) or target.dtype not in (torch.int64, torch.int32):
            raise InputError(
                f"DECOLLE on {view.name}: target must be integer class labels of shape "
                f"({batch},), got {tuple(target.shape)} {target.dtype}"
            )

    def _onehot(self, view: PairView, target: Tensor, like: Tensor) -> Tensor:
        """``onehot(target)`` as ``like``'s dtype and device, after checking the labels.

        The same labels usually arrive for every layer and every step: the last labels checked
        and their one-hot are remembered, with the tensor's version counter (an in-place change
        of the labels is seen).
        """
        cached = self.__dict__.get("_onehot_cache")
        if (
            cached is not None
            and cached[0] is target
            and cached[1] == target._version
            and cached[2].dtype == like.dtype
            and cached[2].device == like.device
        ):
            return cached[2]
        low, high = torch.aminmax(target)
        if low < 0 or high >= self.num_classes:
            raise InputError(
                f"DECOLLE on {view.name}: labels must lie in [0, {self.num_classes - 1}], got "
                f"[{int(low)}, {int(high)}]"
            )
        onehot = F.one_hot(target.to(like.device).long(), self.num_classes).to(like.dtype)
        object.__setattr__(self, "_onehot_cache", (target, target._version, onehot))
        return onehot

    def local_delta(
        self, view: PairView, state: RuleState, spikes: Tensor, target: Tensor
    ) -> Tensor | None:
        """``dL_l/ds`` of the local readout loss for this call's steps times the surrogate
        derivative at them (None during burn-in): the post-synaptic factor :meth:`learn` uses."""
        steps, batch = spikes.shape[:2]
        self._check_target(view, target, batch)
        onehot = self._onehot(view, target, spikes)
        start = self._first_counted(view)
        if start == steps:
            return None
        readout = self.readout(view, state, spikes)
        flat = spikes.reshape(steps, batch, -1)[start:]
        surrogate = state["pending_surrogate"].reshape(steps, batch, -1)[start:]
        if _compiled_applies(flat, readout):
            # the readout's error, dropout and surrogate in one pass (cuda/decolle.cpp)
            back = torch.ops.plasticity_plugins_cpu.decolle_learning_signal(
                flat.flatten(0, 1),
                surrogate.flatten(0, 1),
                view.spec.threshold,
                self.surrogate == "framework",
                readout,
                target.to(device=flat.device, dtype=torch.int64),
                self.dropout,
                1.0 / (batch * self.num_classes),
            ).reshape(flat.shape)
        else:
            if self.dropout > 0:
                keep = torch.rand_like(flat).ge_(self.dropout).div_(1 - self.dropout)
                scores = (flat * keep) @ readout.T
            else:
                scores = flat @ readout.T
            # SmoothL1 (beta 1) averaged over batch and classes: its derivative is the clamped
            # error.
            error = (scores - onehot).clamp_(-1.0, 1.0).div_(batch * self.num_classes)
            back = error @ readout
            if self.dropout > 0:
                back.mul_(keep)
            if self.surrogate == "decolle":
                surrogate = decolle_surrogate(surrogate - view.spec.threshold)
            back = back * surrogate
        if start == 0:
            return back.reshape(spikes.shape)
        delta = torch.zeros(steps, batch, flat.shape[-1], dtype=back.dtype, device=back.device)
        delta[start:] = back
        return delta.reshape(spikes.shape)

    def learn(self, view: PairView, state: RuleState, delta: Tensor) -> Tensor | None:
        """Add ``delta (x) P`` to the weight grad and ``delta`` to the bias grad, ``delta`` being
        :meth:`local_delta`'s ``dL/ds * SG``; the call's eligibility and surrogate are released
        afterwards."""
        del state["pending_surrogate"]
        post = view.to_synapse_output(delta)
        eligibility = state.pop("pending_eligibility")
        rows = post.shape[0] * post.shape[1]
        post_rows = post.reshape(rows, *post.shape[2:])
        weight = view.synapse.weight
        assert isinstance(weight, Tensor)
        factor = view.sink.gradient_factor
        outer_accumulate_(
            view.sink.accumulator(weight),
            post_rows,
            eligibility.reshape(rows, *eligibility.shape[2:]),
            factor,
            conv_geometry(view.synapse),
        )
        bias = getattr(view.synapse, "bias", None)
        if isinstance(bias, Tensor):
            # over the rows (steps and samples) and any convolution positions
            reduce_dims = (0, *range(2, post_rows.dim()))
            view.sink.accumulator(bias).add_(post_rows.sum(dim=reduce_dims), alpha=factor)
        return None

    def predictions(self, state: RuleState) -> Tensor | None:
        """Majority vote over the steps since reset (after burn-in): ``[B]`` class indices."""
        votes = state.get("votes")
        return None if votes is None else votes.argmax(-1)
