"""Triplet STDP (Pfister & Gerstner, J. Neurosci. 26(38) 2006)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..kernels.stdp import TripletTraces, triplet_stdp_accumulate_
from ..kernels.traces import TraceKind, decay_factor
from .base import PairView, RuleState, conv_geometry, sequence_state
from .stdp import WeightDependent, check_taus, check_trace


@dataclass(frozen=True)
class TripletSTDP(WeightDependent):
    """Triplet STDP: pair terms plus a post-post-pre (and pre-pre-post) triplet term.

    Four traces per pair, taus in time steps (``d = exp(-1 / tau)``): ``r1`` (pre,
    ``tau_plus``), ``r2`` (pre, ``tau_x``), ``o1`` (post, ``tau_minus``), ``o2`` (post,
    ``tau_y``), each all-to-all (a spike adds 1) or nearest (a spike sets it to 1). Per step::

        dw[t] = f_plus(w)  * s_post[t] (a2_plus + a3_plus o2[t-1]) (x) r1[t]
              - f_minus(w) * o1[t-1] (x) s_pre[t] (a2_minus + a3_minus r2[t-1])

    (Pfister & Gerstner eqs. 3-4: on a post spike ``w += r1 (A2+ + A3+ o2(t - eps))``, on a pre
    spike ``w -= o1 (A2- + A3- r2(t - eps))``.) ``r1[t]`` includes this step's pre spike, so a
    same-step pair is potentiation; ``o1[t-1], o2[t-1], r2[t-1]`` are decayed to step ``t`` but
    exclude its spikes. The first post spike with no earlier post spike gets no triplet term.

    Diehl & Cook 2015's code (SPECS §4) is the special case :meth:`diehl_cook`: nearest traces,
    ``a2_plus = 0, a3_plus = nu_post, a2_minus = nu_pre, a3_minus = 0`` with
    ``tau_plus = tau_pre``, ``tau_minus = tau_post1``, ``tau_y = tau_post2``, bounds [0, 1].

    Semantics:
        * Reduction: summed over time steps and convolution positions, MEAN over the batch;
          bias is not updated.
        * Sign: ``-dw`` is added to ``weight.grad`` (``SGD(lr=1)`` applies ``dw``).
        * Traces persist across forward calls until ``handle.reset()``.
        * Weight dependence and bounds: keyword-only, see :class:`WeightDependent`.
        * Computation: as :class:`~plasticity_plugins.rules.STDP` (a C++ kernel for CPU
          Conv1d / Conv2d with stride 1, dilation 1 and one group).

    Args:
        a2_plus, a3_plus: pair and triplet potentiation amplitudes.
        a2_minus, a3_minus: pair and triplet depression amplitudes (positive depress).
        tau_plus, tau_x: pre trace time constants (``r1``, ``r2``), in time steps.
        tau_minus, tau_y: post trace time constants (``o1``, ``o2``), in time steps.
        trace: ``"all_to_all"`` or ``"nearest"``.

    The defaults are NESTML's ``stdp_triplet`` defaults (Pfister & Gerstner's visual-cortex fit),
    with 1 ms steps.

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.rules import TripletSTDP
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))
        >>> handle = plasticity_plugins.attach(net, TripletSTDP.diehl_cook())
        >>> with torch.no_grad():
        ...     for t in range(5):
        ...         _ = net(torch.ones(2, 4))
        >>> net[0].weight.grad.shape
        torch.Size([3, 4])
        >>> handle.detach()
    """

    a2_plus: float = 7.5e-10
    a3_plus: float = 9.3e-3
    a2_minus: float = 7e-3
    a3_minus: float = 2.3e-4
    tau_plus: float = 16.8
    tau_x: float = 101.0
    tau_minus: float = 33.7
    tau_y: float = 125.0
    trace: TraceKind = "all_to_all"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_taus(self, "tau_plus", "tau_x", "tau_minus", "tau_y")
        check_trace(self, self.trace)

    @classmethod
    def diehl_cook(
        cls,
        nu_pre: float = 1e-4,
        nu_post: float = 1e-2,
        tau_pre: float = 20.0,
        tau_post1: float = 20.0,
        tau_post2: float = 40.0,
        w_max: float = 1.0,
    ) -> TripletSTDP:
        """Diehl & Cook 2015's code rule: pre spike ``w -= nu_pre post1``; post spike
        ``w += nu_post pre post2`` (post2 before this spike); traces set to 1 on a spike;
        clipped to ``[0, w_max]``. Taus in time steps (the defaults are the ms values for 1 ms
        steps; double them for the original 0.5 ms)."""
        return cls(
            a2_plus=0.0,
            a3_plus=nu_post,
            a2_minus=nu_pre,
            a3_minus=0.0,
            tau_plus=tau_pre,
            tau_x=tau_pre,
            tau_minus=tau_post1,
            tau_y=tau_post2,
            trace="nearest",
            w_min=0.0,
            w_max=w_max,
        )

    def step(self, view: PairView, state: RuleState) -> None:
        """Accumulate this call's triplet-STDP update; advance the four traces."""
        pre, post = view.spike_pair()
        pre_zeros, post_zeros = (pre, 0.0), (post, 0.0)
        stored = sequence_state(
            view,
            state,
            {"r1": pre_zeros, "r2": pre_zeros, "o1": post_zeros, "o2": post_zeros},
            "TripletSTDP",
        )
        weight = view.synapse.weight
        assert isinstance(weight, Tensor)
        traces = triplet_stdp_accumulate_(
            view.sink.accumulator(weight),
            pre,
            post,
            TripletTraces(stored["r1"], stored["r2"], stored["o1"], stored["o2"]),
            a2_plus=self.a2_plus,
            a3_plus=self.a3_plus,
            a2_minus=self.a2_minus,
            a3_minus=self.a3_minus,
            decays=(
                decay_factor(self.tau_plus),
                decay_factor(self.tau_x),
                decay_factor(self.tau_minus),
                decay_factor(self.tau_y),
            ),
            alpha=view.sink.hebbian_factor / pre.shape[1],
            kind=self.trace,
            conv=conv_geometry(view.synapse),
            factors=self.weight_factors(weight),
        )
        state.update(traces._asdict())
