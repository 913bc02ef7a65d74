"""Reward-modulated STDP (Florian, Neural Computation 19(6) 2007): MSTDP and MSTDPET."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..kernels.stdp import (
    STDPTerms,
    accumulate_terms_,
    accumulate_terms_per_sample_,
    pair_stdp_terms,
)
from ..kernels.traces import TraceKind, decay_factor, trace_sequence
from ._reward import RewardInbox
from .base import PairView, RuleState, UpdateSink, conv_geometry, sequence_state
from .stdp import WeightBounds, check_taus, check_trace

_TERMS = tuple(f"pending_{name}" for name in STDPTerms._fields)
_LAST = tuple(f"last_{name}" for name in STDPTerms._fields)


def _store(state: RuleState, keys: tuple[str, ...], terms: STDPTerms) -> None:
    state.update(zip(keys, terms, strict=True))


def _pending_shape(state: RuleState) -> tuple[int, int]:
    steps, batch = state[_TERMS[0]].shape[:2]
    return int(steps), int(batch)


def _load(state: RuleState, keys: tuple[str, ...]) -> STDPTerms | None:
    if keys[0] not in state:
        return None
    return STDPTerms(*(state[k] for k in keys))


@dataclass(frozen=True)
class MSTDP(WeightBounds):
    """Modulated STDP: ``dw[t] = r[t] * zeta[t]``, zeta the pair-STDP term of step ``t``.

    ``zeta[t] = a_plus s_post[t] (x) x_pre[t] - a_minus (d_post x_post[t-1]) (x) s_pre[t]``
    (the pair term of :class:`~plasticity_plugins.rules.STDP`, same traces and timing; the
    amplitudes include Florian's learning rate ``gamma``), and ``r[t]`` the reward of step
    ``t``, one per sample.

    Reward delivery: run the forward call, compute the reward from its output, then call
    ``rule.reward(r)`` with ``r`` of shape ``[B]`` (for every step of that call) or ``[T, B]``;
    the update of every pair the rule is attached to is written then. The reward multiplies
    each sample's zeta along the BATCH axis (``sum_b r[b] zeta_b``, one GEMM with the
    post-synaptic rows scaled by ``r[b]``), must not require grad, and a forward call that
    gets no reward before the next one counts as ``r = 0``.

    Semantics:
        * Reduction: summed over steps and convolution positions, MEAN over the batch; bias is
          not updated.
        * Sign: ``-dw`` is added to ``weight.grad`` at ``reward()`` (``SGD(lr=1)`` applies
          ``dw``). Optional bounds ``w_min``/``w_max`` (keyword-only) clamp after each step of
          the optimizer handed to ``attach``.
        * Traces persist across forward calls until ``handle.reset()``.

    Args:
        a_plus: causal amplitude.
        a_minus: anti-causal amplitude (positive: depression for positive reward).
        tau_pre, tau_post: trace time constants, in time steps (Florian: 20 ms).
        trace: ``"all_to_all"`` or ``"nearest"``.

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.rules import MSTDP
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 2), snn.Leaky(beta=0.9, init_hidden=True))
        >>> rule = MSTDP(a_plus=0.01, a_minus=0.01)
        >>> handle = plasticity_plugins.attach(net, rule)
        >>> target = torch.tensor([0, 1])
        >>> with torch.no_grad():
        ...     for t in range(5):
        ...         out = net(torch.ones(2, 4))
        ...         rule.reward(out[torch.arange(2), target] * 2 - out.sum(1))  # [B]
        >>> net[0].weight.grad.shape
        torch.Size([2, 4])
        >>> handle.detach()
    """

    a_plus: float = 0.01
    a_minus: float = 0.01
    tau_pre: float = 20.0
    tau_post: float = 20.0
    trace: TraceKind = "all_to_all"
    _inbox: RewardInbox = field(default_factory=RewardInbox, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_taus(self, *self._taus())
        check_trace(self, self.trace)

    def _taus(self) -> tuple[str, ...]:
        return ("tau_pre", "tau_post")

    def _terms(self, view: PairView, state: RuleState) -> STDPTerms:
        """This call's pair-STDP terms; advances the traces."""
        pre, post = view.spike_pair()
        traces = sequence_state(
            view,
            state,
            {"pre_trace": (pre, 0.0), "post_trace": (post, 0.0)},
            type(self).__name__,
        )
        terms, state["pre_trace"], state["post_trace"] = pair_stdp_terms(
            pre,
            post,
            traces["pre_trace"],
            traces["post_trace"],
            pre_decay=decay_factor(self.tau_pre),
            post_decay=decay_factor(self.tau_post),
            kind=self.trace,
        )
        return terms

    def step(self, view: PairView, state: RuleState) -> None:
        """Compute this call's zeta terms and keep them for :meth:`reward`."""
        _store(state, _TERMS, self._terms(view, state))
        self._inbox.register(view, state)

    def reward(self, reward: Tensor | float) -> None:
        """Apply the reward of the latest forward call to every attached pair.

        Args:
            reward: ``[B]`` (one per sample, for every step of the call), ``[T, B]`` (per step)
                or a float; detached.

        Raises:
            InputError: wrong shape, requires grad, NaN / inf.
            StateError: no forward call since the last reward.
        """
        self._inbox.deliver(
            type(self).__name__,
            reward,
            self._apply,
            _TERMS[0],
            _pending_shape,
        )

    def _apply(self, synapse: nn.Module, state: RuleState, sink: UpdateSink, r: Tensor) -> None:
        terms = _load(state, _TERMS)
        assert terms is not None
        for key in _TERMS:
            del state[key]
        weight = synapse.weight
        assert isinstance(weight, Tensor)
        accumulate_terms_(
            sink.accumulator(weight),
            terms,
            a_plus=self.a_plus,
            a_minus=self.a_minus,
            alpha=sink.hebbian_factor / terms.causal_post.shape[1],
            conv=conv_geometry(synapse),
            post_scale=r.to(weight.device, weight.dtype),
        )


@dataclass(frozen=True)
class MSTDPET(MSTDP):
    """Modulated STDP with an eligibility trace: ``dw[t] = r[t] * e[t]``.

    ``e[t] = exp(-1 / tau_e) e[t-1] + zeta[t] / tau_e`` (Florian 2007, dt = 1 step), with
    ``zeta`` the pair-STDP term of :class:`MSTDP`. THIS step's zeta enters ``e[t]`` (Florian);
    ``delayed=True`` uses LAST step's zeta instead, as SpikingJelly 2.0's ``MSTDPETLearner``
    (``trace_e = exp(-1/tau) trace_e + elig[t-1] / tau``).

    The eligibility is per sample (``[B, *weight.shape]``, kept in the pair's state) because the
    reward is per sample: this is the rule's inherent memory cost. It is advanced once per call
    with one batched GEMM (Linear) or one grouped weight convolution (Conv); the reward then
    costs one contraction over the batch plus one GEMM.

    Reward delivery, reduction, sign and bounds: as :class:`MSTDP` (``rule.reward(r)`` after each
    forward call; a call without reward counts as ``r = 0``; the eligibility keeps evolving).

    Args:
        tau_e: eligibility time constant, in time steps (Florian: 25 ms).
        delayed: feed last step's zeta into the eligibility (SpikingJelly) instead of this
            step's (Florian).
        a_plus, a_minus, tau_pre, tau_post, trace: as :class:`MSTDP`.

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.rules import MSTDPET
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 2), snn.Leaky(beta=0.9, init_hidden=True))
        >>> rule = MSTDPET(a_plus=0.01, a_minus=0.01, tau_e=5.0)
        >>> handle = plasticity_plugins.attach(net, rule)
        >>> with torch.no_grad():
        ...     for t in range(5):
        ...         out = net(torch.ones(2, 4))
        ...         rule.reward(torch.tensor([1.0, -1.0]))
        >>> net[0].weight.grad.shape
        torch.Size([2, 4])
        >>> handle.detach()
    """

    tau_e: float = 25.0
    delayed: bool = False

    def _taus(self) -> tuple[str, ...]:
        return ("tau_pre", "tau_post", "tau_e")

    def step(self, view: PairView, state: RuleState) -> None:
        """Advance the per-sample eligibility over this call; keep what the reward needs."""
        terms = self._terms(view, state)
        if self.delayed:
            previous = _load(state, _LAST)
            _store(state, _LAST, STDPTerms(*(t[-1:] for t in terms)))
            terms = terms.shifted(previous)
        steps, batch = terms.causal_post.shape[:2]
        weight = view.synapse.weight
        assert isinstance(weight, Tensor)
        decay = decay_factor(self.tau_e)
        start = state.get("eligibility")
        # (a batch size changed without handle.reset() was refused by _terms)
        end = weight.new_zeros(batch, *weight.shape) if start is None else start * decay**steps
        powers = decay ** torch.arange(steps - 1, -1, -1, dtype=weight.dtype, device=weight.device)
        accumulate_terms_per_sample_(
            end,
            terms,
            a_plus=self.a_plus,
            a_minus=self.a_minus,
            alpha=1.0 / self.tau_e,
            conv=conv_geometry(view.synapse),
            post_scale=powers.unsqueeze(1).expand(steps, batch),
        )
        state["eligibility"] = end
        _store(state, _TERMS, terms)
        if start is not None:
            state["pending_start"] = start
        else:
            state.pop("pending_start", None)
        self._inbox.register(view, state)

    def _apply(self, synapse: nn.Module, state: RuleState, sink: UpdateSink, r: Tensor) -> None:
        # sum_t r[t] e[t] = (sum_t r[t] d^(t+1)) e_start + sum_s zeta[s] R[s] / tau_e,
        # R[s] = sum_{t >= s} r[t] d^(t-s).
        terms = _load(state, _TERMS)
        assert terms is not None
        start = state.pop("pending_start", None)
        for key in _TERMS:
            del state[key]
        weight = synapse.weight
        assert isinstance(weight, Tensor)
        r = r.to(weight.device, weight.dtype)
        steps, batch = r.shape
        decay = decay_factor(self.tau_e)
        index = torch.arange(steps, dtype=weight.dtype, device=weight.device)
        # R is a trace of the reward run backwards in time
        future = trace_sequence(r.flip(0), torch.zeros_like(r[0]), decay).flip(0)
        acc = sink.accumulator(weight)
        alpha = sink.hebbian_factor / batch
        if start is not None:
            carried = (decay ** (index + 1)) @ r  # [B]
            acc.add_(torch.tensordot(carried, start, dims=1), alpha=alpha)
        accumulate_terms_(
            acc,
            terms,
            a_plus=self.a_plus,
            a_minus=self.a_minus,
            alpha=alpha / self.tau_e,
            conv=conv_geometry(synapse),
            post_scale=future,
        )
