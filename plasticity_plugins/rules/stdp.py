"""Pair-based spike-timing-dependent plasticity (Bi & Poo 1998; Song, Miller & Abbott 2000)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import StateError
from ..kernels.stdp import pair_stdp_accumulate_
from ..kernels.traces import TraceKind, decay_factor
from .base import LocalRule, PairView, RuleState, conv_geometry


@dataclass(frozen=True)
class STDP(LocalRule):
    """Pair STDP with exponential windows on Linear, Conv1d and Conv2d synapses.

    Per pair and per time step ``t`` (taus in time steps, ``d = exp(-1 / tau)``)::

        x_pre[t]  = d_pre  * x_pre[t-1]  + s_pre[t]
        x_post[t] = d_post * x_post[t-1] + s_post[t]
        dw[t]     = a_plus  * s_post[t] (x) x_pre[t]
                  - a_minus * (d_post * x_post[t-1]) (x) s_pre[t]

    ``s_pre`` is what entered the synapse, ``s_post`` the neuron's output spikes (mapped back
    through any Flatten / pooling between synapse and neuron).

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
        * Traces persist across forward calls until ``handle.reset()`` (call it at the start
          of every sequence); a batch size that changes without a reset is an error.

    Args:
        a_plus: potentiation amplitude.
        a_minus: depression amplitude (positive for classic depression).
        tau_pre: pre-synaptic trace time constant, in time steps.
        tau_post: post-synaptic trace time constant, in time steps.
        trace: ``"all_to_all"`` (additive) or ``"nearest"``.

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
        for name in ("tau_pre", "tau_post"):
            if not getattr(self, name) > 0:
                raise ValueError(f"STDP: {name} must be > 0 time steps, got {getattr(self, name)}")
        if self.trace not in ("all_to_all", "nearest"):
            raise ValueError(f"STDP: trace must be 'all_to_all' or 'nearest', got {self.trace!r}")

    def step(self, view: PairView, state: RuleState) -> None:
        """Accumulate this call's STDP update of ``view.synapse.weight``; advance the traces."""
        pre = view.x
        post = view.to_synapse_output(view.neuron.s)
        batch = pre.shape[1]
        pre_trace = state.get("pre_trace")
        post_trace = state.get("post_trace")
        if pre_trace is None or post_trace is None:
            pre_trace = torch.zeros_like(pre[0])
            post_trace = torch.zeros_like(post[0])
        elif pre_trace.shape != pre.shape[1:] or post_trace.shape != post.shape[1:]:
            raise StateError(
                f"STDP on {view.name}: input {tuple(pre.shape[1:])} does not match the traces "
                f"of the running sequence {tuple(pre_trace.shape)}; call handle.reset() "
                "before a sequence with another batch size or input size"
            )
        weight = view.synapse.weight
        assert isinstance(weight, torch.Tensor)
        state["pre_trace"], state["post_trace"] = pair_stdp_accumulate_(
            view.sink.accumulator(weight),
            pre,
            post,
            pre_trace,
            post_trace,
            a_plus=self.a_plus,
            a_minus=self.a_minus,
            pre_decay=decay_factor(self.tau_pre),
            post_decay=decay_factor(self.tau_post),
            alpha=view.sink.hebbian_factor / batch,
            kind=self.trace,
            conv=conv_geometry(view.synapse),
        )
