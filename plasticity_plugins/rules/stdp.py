"""Pair-based spike-timing-dependent plasticity (Bi & Poo 1998; Song, Miller & Abbott 2000).

Also the two pieces every bounded STDP-family rule shares: :class:`WeightBounds` (a projection
of the weights onto ``[w_min, w_max]`` after each optimizer step) and :class:`WeightDependent`
(additive, soft-bound or Mozafari weight dependence of the update).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..kernels.stdp import (
    WEIGHT_DEPENDENCES,
    WeightDependence,
    pair_stdp_accumulate_,
    weight_factors,
)
from ..kernels.traces import TraceKind, decay_factor
from .base import LocalRule, PairView, RuleState, conv_geometry, sequence_state


@dataclass(frozen=True, kw_only=True)
class WeightBounds(LocalRule):
    """Hard weight bounds, enforced as a projection after each optimizer step.

    With the optimizer handed to ``attach(..., optimizer=...)``, the synapse weight is clamped
    to ``[w_min, w_max]`` after every ``optimizer.step()`` (either bound may be None). The update
    written into ``.grad`` is the unclipped ``dw``; the projection is what keeps the weights in
    range, whatever the optimizer did.

    Args:
        w_min: lower bound, or None.
        w_max: upper bound, or None.
    """

    w_min: float | None = None
    w_max: float | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.w_min is not None and self.w_max is not None and not self.w_min < self.w_max:
            raise ValueError(f"{name}: w_min must be < w_max, got [{self.w_min}, {self.w_max}]")

    def after_optimizer_step(self, synapse: nn.Module, state: RuleState) -> None:
        """Clamp the weight to ``[w_min, w_max]``."""
        if self.w_min is None and self.w_max is None:
            return None
        weight = synapse.weight
        assert isinstance(weight, Tensor)
        with torch.no_grad():
            weight.clamp_(self.w_min, self.w_max)
        return None


@dataclass(frozen=True, kw_only=True)
class WeightDependent(WeightBounds):
    """Weight bounds plus the weight dependence of the STDP amplitudes.

    ``dw = a_plus f_plus(w) * causal - a_minus f_minus(w) * anticausal`` with (see
    :func:`~plasticity_plugins.kernels.stdp.weight_factors`):

    * ``"additive"``: ``f_plus = f_minus = 1`` (bounds, if any, by clipping only);
    * ``"soft"``: ``f_plus = (w_max - w)^mu``, ``f_minus = (w - w_min)^mu``;
    * ``"mozafari"``: ``f_plus = f_minus = (w - w_min)(w_max - w)``, i.e. ``w (1 - w)`` on [0, 1].

    The factors are evaluated at the weight when the update is computed (the forward call);
    weights change only at the optimizer step.

    Args:
        weight_dependence: ``"additive"``, ``"soft"`` or ``"mozafari"`` (the last two need
            both bounds).
        mu: soft-bound exponent (> 0).
    """

    weight_dependence: WeightDependence = "additive"
    mu: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.weight_dependence not in WEIGHT_DEPENDENCES:
            raise ValueError(
                f"{name}: weight_dependence must be one of {WEIGHT_DEPENDENCES}, got "
                f"{self.weight_dependence!r}"
            )
        if self.weight_dependence != "additive" and (self.w_min is None or self.w_max is None):
            raise ValueError(
                f"{name}: weight_dependence={self.weight_dependence!r} needs both w_min and w_max"
            )
        if not self.mu > 0:
            raise ValueError(f"{name}: mu must be > 0, got {self.mu}")

    def weight_factors(self, weight: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(f_plus(w), f_minus(w))`` for ``weight``, or None for the additive rule."""
        return weight_factors(weight, self.weight_dependence, self.w_min, self.w_max, self.mu)


def check_taus(rule: object, *names: str) -> None:
    """Raise ValueError unless each named time constant of ``rule`` is > 0."""
    for name in names:
        value = getattr(rule, name)
        if not value > 0:
            raise ValueError(f"{type(rule).__name__}: {name} must be > 0 time steps, got {value}")


def check_trace(rule: object, kind: str) -> None:
    """Raise ValueError unless ``kind`` is a trace kind."""
    if kind not in ("all_to_all", "nearest"):
        raise ValueError(
            f"{type(rule).__name__}: trace must be 'all_to_all' or 'nearest', got {kind!r}"
        )


@dataclass(frozen=True)
class STDP(WeightDependent):
    """Pair STDP with exponential windows on Linear, Conv1d and Conv2d synapses.

    Per pair and per time step ``t`` (taus in time steps, ``d = exp(-1 / tau)``)::

        x_pre[t]  = d_pre  * x_pre[t-1]  + s_pre[t]
        x_post[t] = d_post * x_post[t-1] + s_post[t]
        dw[t]     = a_plus  * f_plus(w)  * s_post[t] (x) x_pre[t]
                  - a_minus * f_minus(w) * (d_post * x_post[t-1]) (x) s_pre[t]

    ``s_pre`` is what entered the synapse, ``s_post`` the neuron's output spikes (mapped back
    through any Flatten / pooling between synapse and neuron); ``f_plus``, ``f_minus`` are 1
    (``weight_dependence="additive"``, the default) or the soft / Mozafari bounds of
    :class:`WeightDependent`.

    Semantics:
        * Timing: traces include the current step's spike (all-to-all: every spike adds 1;
          ``trace="nearest"``: a spike sets the trace to 1). The depression term uses the post
          trace decayed to this step BEFORE this step's post spike is added, so a pre/post pair
          ``d`` steps apart changes w by exactly ``a_plus * exp(-d / tau_pre)`` (pre first) or
          ``-a_minus * exp(-d / tau_post)`` (post first), and a same-step pair is potentiation
          only.
        * Reduction: summed over time steps and over convolution positions, MEAN over the
          batch. Bias is not updated.
        * Sign: ``-dw`` is added to ``weight.grad`` (times the AMP scale with a GradScaler), so
          ``torch.optim.SGD(lr=1)`` applies exactly ``dw``; any optimizer works unchanged.
        * Bounds: with ``w_min`` / ``w_max`` and the optimizer handed to ``attach``, weights are
          clamped after every optimizer step.
        * Traces persist across forward calls until ``handle.reset()`` (call it at the start
          of every sequence); a batch size that changes without a reset is an error.
        * Computation: on CPU, a Linear (float32 / float64) and a Conv1d / Conv2d with stride
          1, dilation 1 and one group take C++ kernels that visit only the nonzero spikes
          (built on first use; set ``PLASTICITY_PLUGINS_CPU_EXT=0`` for the torch ops); both
          give the same update up to the order of floating-point sums.

    Args:
        a_plus: potentiation amplitude.
        a_minus: depression amplitude (positive for classic depression).
        tau_pre: pre-synaptic trace time constant, in time steps.
        tau_post: post-synaptic trace time constant, in time steps.
        trace: ``"all_to_all"`` (additive) or ``"nearest"``.
        weight_dependence, mu, w_min, w_max: keyword-only, see :class:`WeightDependent`.

    Example:
        >>> import torch, plasticity_plugins
        >>> from plasticity_plugins.rules import STDP
        >>> import snntorch as snn
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))
        >>> handle = plasticity_plugins.attach(net, STDP(a_plus=0.01, a_minus=0.01))
        >>> with torch.no_grad():
        ...     for t in range(5):
        ...         _ = net(torch.ones(2, 4))
        >>> net[0].weight.grad.shape
        torch.Size([3, 4])
        >>> handle.detach()
    """

    a_plus: float = 0.01
    a_minus: float = 0.01
    tau_pre: float = 20.0
    tau_post: float = 20.0
    trace: TraceKind = "all_to_all"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_taus(self, "tau_pre", "tau_post")
        check_trace(self, self.trace)

    def step(self, view: PairView, state: RuleState) -> None:
        """Accumulate this call's STDP update of ``view.synapse.weight``; advance the traces."""
        pre, post = view.spike_pair()
        traces = sequence_state(
            view,
            state,
            {"pre_trace": (pre, 0.0), "post_trace": (post, 0.0)},
            "STDP",
        )
        weight = view.synapse.weight
        assert isinstance(weight, Tensor)
        state["pre_trace"], state["post_trace"] = pair_stdp_accumulate_(
            view.sink.accumulator(weight),
            pre,
            post,
            traces["pre_trace"],
            traces["post_trace"],
            a_plus=self.a_plus,
            a_minus=self.a_minus,
            pre_decay=decay_factor(self.tau_pre),
            post_decay=decay_factor(self.tau_post),
            alpha=view.sink.hebbian_factor / pre.shape[1],
            kind=self.trace,
            conv=conv_geometry(view.synapse),
            factors=self.weight_factors(weight),
        )
