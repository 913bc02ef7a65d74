"""First-spike STDP and R-STDP gated by k-winners-take-all (Mozafari et al., Pattern
Recognition 94, 2019; SpykeTorch, Mozafari et al. 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..kernels.competition import (
    first_spike_times,
    k_winners,
    pointwise_inhibition,
    value_at_first_spike,
)
from ..kernels.stdp import WeightDependence, first_spike_stdp_accumulate_
from ._reward import RewardInbox
from .base import PairView, RuleState, UpdateSink, conv_geometry, sequence_state
from .stdp import WeightDependent


class _Rates:
    """The current learning rates of a rule (mutable; None: the rule's configured ones)."""

    def __init__(self) -> None:
        self.value: tuple[float, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class WinnerGatedSTDP(WeightDependent):
    """The shared part of :class:`MozafariSTDP` and :class:`RSTDP`: who learns, and how.

    Over a sequence (since ``handle.reset()``) the rule tracks each pre neuron's and each post
    neuron's first spike, and the post potential at that spike. After every forward call it
    selects the k winners per sample (:func:`~plasticity_plugins.kernels.competition.k_winners`:
    earliest first spike, then larger potential; each winner inhibits its feature map and the
    ``(2 radius + 1)^2`` window). Winners are final: a later call only adds winners (the order
    puts every earlier spike first). Only the winners' kernels change, each winner at its own
    position, by (:func:`~plasticity_plugins.kernels.stdp.first_spike_stdp_accumulate_`)::

        dw = + a_plus  f_plus(w)   the pre neuron spiked no later than the winner (same step)
        dw = - a_minus f_minus(w)  otherwise (later, never, or zero padding)

    With ``pointwise=True`` only the feature that spiked first at its position (ties: the larger
    potential; :func:`~plasticity_plugins.kernels.competition.pointwise_inhibition`) can win
    there, as SpykeTorch's ``pointwise_inhibition`` before ``get_k_winners`` when a layer learns.

    Args:
        k: winners per sample (<= the number of features).
        radius: inhibition radius in positions; None inhibits only the winner's feature map
            (required for neurons without spatial dimensions, e.g. after a Linear synapse).
        pointwise: one candidate feature per position (above); needs a Conv synapse.
        weight_dependence, mu, w_min, w_max: see :class:`WeightDependent`.
    """

    k: int = 5
    radius: int | None = 3
    pointwise: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"{name}: k must be an int >= 1, got {self.k!r}")
        if self.radius is not None and (
            isinstance(self.radius, bool) or not isinstance(self.radius, int) or self.radius < 0
        ):
            raise ValueError(f"{name}: radius must be None or an int >= 0, got {self.radius!r}")
        if not isinstance(self.pointwise, bool):
            raise ValueError(f"{name}: pointwise must be a bool, got {self.pointwise!r}")

    def _observe(self, view: PairView, state: RuleState) -> None:
        """Track first spikes, select the winners, keep the new winners' update pending."""
        pre = view.x
        dtype = pre.dtype
        spikes = view.neuron.s.to(dtype)
        start = view.first_step
        inf = math.inf
        name = type(self).__name__
        stored = sequence_state(
            view,
            state,
            {
                "pre_time": (pre, inf),
                "post_time": (spikes, inf),
                "post_u": (spikes, 0.0),
                "winners": (spikes, False),
            },
            name,
        )
        new_time = first_spike_times(spikes, start)
        fresh = torch.isinf(stored["post_time"]) & torch.isfinite(new_time)
        post_time = torch.where(fresh, new_time, stored["post_time"])
        post_u = stored["post_u"]
        if bool(fresh.any()):
            potential = value_at_first_spike(view.neuron.u.to(dtype), spikes)
            post_u = torch.where(fresh, potential, post_u)
        candidate_time = post_time
        if self.pointwise:
            if post_time.dim() < 3:
                raise InputError(
                    f"{name} on {view.name}: pointwise=True needs neurons with spatial "
                    f"dimensions (a Conv synapse), got neurons {tuple(spikes.shape[2:])}"
                )
            keep = pointwise_inhibition(post_time, post_u)
            candidate_time = torch.where(keep, post_time, inf)
        try:
            winners = k_winners(candidate_time, post_u, self.k, self.radius)
        except InputError as exc:
            raise InputError(
                f"{name} on {view.name} (neurons {tuple(spikes.shape[2:])}): {exc}"
            ) from None
        state["pre_time"] = torch.minimum(stored["pre_time"], first_spike_times(pre, start))
        state["post_time"], state["post_u"], state["winners"] = post_time, post_u, winners
        new = winners & ~stored["winners"]
        if not bool(new.any()):
            return
        steps = spikes.shape[0]
        index = torch.arange(start, start + steps, dtype=dtype, device=pre.device)
        winner_spikes = (post_time.unsqueeze(0) == index.view(-1, *([1] * post_time.dim()))) & new
        routed = view.to_synapse_output(winner_spikes.to(dtype)).to(dtype)
        time = first_spike_times(routed, start)
        if "pending_weight" in state:
            state["pending_time"] = torch.minimum(state["pending_time"], time)
            state["pending_weight"] = state["pending_weight"] + routed.sum(0)
        else:
            state["pending_time"] = time
            state["pending_weight"] = routed.sum(0)

    def _flush(
        self,
        synapse: nn.Module,
        state: RuleState,
        sink: UpdateSink,
        a_plus: float | Tensor,
        a_minus: float | Tensor,
    ) -> None:
        """Write the pending winners' update (amplitudes per sample or shared) and forget it."""
        if "pending_weight" not in state:
            return
        post_time = state.pop("pending_time")
        post_weight = state.pop("pending_weight")
        weight = synapse.weight
        assert isinstance(weight, Tensor)
        first_spike_stdp_accumulate_(
            sink.accumulator(weight),
            state["pre_time"],
            post_time,
            post_weight,
            a_plus=a_plus,
            a_minus=a_minus,
            alpha=sink.hebbian_factor / post_weight.shape[0],
            conv=conv_geometry(synapse),
            factors=self.weight_factors(weight),
        )


@dataclass(frozen=True)
class MozafariSTDP(WinnerGatedSTDP):
    """Unsupervised first-spike STDP of Mozafari et al. 2019, layers 1-2 (k-WTA gated).

    See :class:`WinnerGatedSTDP` for the winners and the update; with the default
    ``weight_dependence="mozafari"`` on [0, 1]::

        dw = + a_plus  w (1 - w)   pre spiked no later than the winner (same step: LTP)
        dw = - a_minus w (1 - w)   otherwise

    In this package's sign convention ``a_minus`` is positive: the paper's ``a- = -0.003`` is
    ``a_minus = 0.003``. Updates are written as each winner appears (after the forward call of
    its first spike); the paper's conv1 uses ``k = 5, radius = 3``, conv2 ``k = 8, radius = 1``.

    Learning-rate schedule (SpykeTorch): every ``schedule_every`` images
    ``a_plus <- min(schedule_factor * a_plus, a_plus_max)`` and ``a_minus = minus_ratio *
    a_plus``. Call :meth:`update_rates` with the number of images seen so far (it recomputes
    the rates from the configured ones, so it is idempotent); :attr:`rates` are the rates in
    use.

    Semantics:
        * Reduction: summed over winners (at most one per feature per sample), MEAN over the
          batch (with batch 1, each winner's kernel moves by exactly ``a w (1 - w)``).
        * Sign: ``-dw`` is added to ``weight.grad`` (``SGD(lr=1)`` applies ``dw``); with the
          optimizer handed to ``attach``, weights are clamped to ``[w_min, w_max]`` after each
          step.
        * Call ``handle.reset()`` before every image: first spikes and winners are per
          sequence.
        * The neurons need not fire only once: only each neuron's first spike counts.

    Args:
        a_plus: potentiation rate (0.004).
        a_minus: depression rate, positive (0.003).
        schedule_every, schedule_factor, a_plus_max, minus_ratio: the schedule (500, 2, 0.15,
            0.75).
        k, radius, pointwise, weight_dependence, mu, w_min, w_max: keyword-only, see
            :class:`WinnerGatedSTDP`.

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.rules import MozafariSTDP
        >>> conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
        >>> _ = torch.nn.init.normal_(conv.weight, 0.8, 0.05)
        >>> net = torch.nn.Sequential(conv, snn.Leaky(beta=1.0, threshold=2.0, init_hidden=True))
        >>> rule = MozafariSTDP(k=2, radius=1)
        >>> handle = plasticity_plugins.attach(net, rule)
        >>> spikes = (torch.rand(5, 1, 2, 8, 8) < 0.3).float()
        >>> with torch.no_grad():
        ...     for x_t in spikes:
        ...         _ = net(x_t)
        >>> changed = (net[0].weight.grad.flatten(1) != 0).any(1)
        >>> int(changed.sum()) <= 2   # only the winners' kernels
        True
        >>> rule.update_rates(images_seen=1000)
        (0.016, 0.012)
        >>> handle.detach()
    """

    a_plus: float = 0.004
    a_minus: float = 0.003
    schedule_every: int = 500
    schedule_factor: float = 2.0
    a_plus_max: float = 0.15
    minus_ratio: float = 0.75
    weight_dependence: WeightDependence = field(default="mozafari", kw_only=True)
    w_min: float | None = field(default=0.0, kw_only=True)
    w_max: float | None = field(default=1.0, kw_only=True)
    _rates: _Rates = field(default_factory=_Rates, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule_every < 1:
            raise ValueError(
                f"MozafariSTDP: schedule_every must be >= 1, got {self.schedule_every}"
            )

    @property
    def rates(self) -> tuple[float, float]:
        """The ``(a_plus, a_minus)`` in use."""
        value = self._rates.value
        return (self.a_plus, self.a_minus) if value is None else (value[0], value[1])

    def update_rates(self, images_seen: int) -> tuple[float, float]:
        """Set the rates of the schedule after ``images_seen`` images; return them.

        ``n = images_seen // schedule_every`` doublings: ``a_plus = min(a_plus * factor^n,
        a_plus_max)``, ``a_minus = minus_ratio * a_plus`` (the configured rates for ``n = 0``).
        """
        if images_seen < 0:
            raise ValueError(
                f"MozafariSTDP.update_rates: images_seen must be >= 0, got {images_seen}"
            )
        steps = images_seen // self.schedule_every
        if steps == 0:
            self._rates.value = None
        else:
            a_plus = min(self.a_plus * self.schedule_factor**steps, self.a_plus_max)
            self._rates.value = (a_plus, self.minus_ratio * a_plus)
        return self.rates

    def step(self, view: PairView, state: RuleState) -> None:
        """Select this call's new winners and write their update."""
        self._observe(view, state)
        a_plus, a_minus = self.rates
        self._flush(view.synapse, state, view.sink, a_plus, a_minus)


@dataclass(frozen=True)
class RSTDP(WinnerGatedSTDP):
    """Reward-modulated first-spike STDP of Mozafari et al. 2019 (layer 3, the decision layer).

    The winners and the causal / anti-causal split are those of :class:`WinnerGatedSTDP`
    (default ``k = 1``: the earliest, then most depolarised, output neuron decides). After the
    sequence, ``rule.reward(r)`` with one value per sample applies, to each sample's winners::

        r > 0 (reward):     dw = r * (+a_plus         if causal else -a_minus)
        r < 0 (punishment): dw = |r| * (+punish_a_plus if causal else -punish_a_minus)
        r = 0, or no winner (a silent output): no change

    with the defaults (sign convention: ``a_minus`` multiplies minus the anti-causal term)
    reward = (0.004, 0.003), i.e. the paper's (+0.004, -0.003), and punishment = (-0.004,
    -0.0005), the paper's (-0.004, +0.0005). Weights are clamped to [0.2, 0.8] after each
    optimizer step; the update is additive (SpykeTorch's layer 3 runs without the stabilizer).

    Adaptive rates: :meth:`adapt_rates` scales the reward rates by the miss ratio and the
    punishment rates by the hit ratio of the last block of images (1000 in SPECS; SpykeTorch
    per epoch), always from the configured rates.

    Semantics:
        * Reward: a float, or ``[B]``, detached. Call it once per image after the forward
          calls, then ``handle.reset()``; winners accumulate over the calls until the reward.
          The reward multiplies along the batch axis; a reward with no forward call since the
          last one raises.
        * Reduction: summed over winners, MEAN over the batch; ``-dw`` lands in ``.grad``.

    Args:
        a_plus, a_minus: reward rates (0.004, 0.003).
        punish_a_plus, punish_a_minus: punishment rates (-0.004, -0.0005).
        k, radius, pointwise, weight_dependence, mu, w_min, w_max: keyword-only, see
            :class:`WinnerGatedSTDP` (defaults 1, None, False, "additive", 1, 0.2, 0.8).

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.rules import RSTDP
        >>> fc = torch.nn.Linear(6, 4, bias=False)
        >>> _ = torch.nn.init.uniform_(fc.weight, 0.3, 0.7)
        >>> net = torch.nn.Sequential(fc, snn.Leaky(beta=1.0, init_hidden=True))
        >>> rule = RSTDP()
        >>> handle = plasticity_plugins.attach(net, rule)
        >>> with torch.no_grad():
        ...     for t in range(4):
        ...         out = net(torch.ones(2, 6))
        >>> rule.reward(torch.tensor([1.0, -1.0]))   # sample 0 right, sample 1 wrong
        >>> handle.reset()
        >>> [round(a, 6) for a in rule.adapt_rates(hit_ratio=0.9, miss_ratio=0.1)]
        [0.0004, 0.0003, -0.0036, -0.00045]
        >>> handle.detach()
    """

    a_plus: float = 0.004
    a_minus: float = 0.003
    punish_a_plus: float = -0.004
    punish_a_minus: float = -0.0005
    k: int = field(default=1, kw_only=True)
    radius: int | None = field(default=None, kw_only=True)
    w_min: float | None = field(default=0.2, kw_only=True)
    w_max: float | None = field(default=0.8, kw_only=True)
    _rates: _Rates = field(default_factory=_Rates, init=False, repr=False, compare=False)
    _inbox: RewardInbox = field(default_factory=RewardInbox, init=False, repr=False, compare=False)

    @property
    def rates(self) -> tuple[float, float, float, float]:
        """``(a_plus, a_minus, punish_a_plus, punish_a_minus)`` in use."""
        value = self._rates.value
        if value is None:
            return (self.a_plus, self.a_minus, self.punish_a_plus, self.punish_a_minus)
        return (value[0], value[1], value[2], value[3])

    def adapt_rates(self, hit_ratio: float, miss_ratio: float) -> tuple[float, float, float, float]:
        """Reward rates times ``miss_ratio``, punishment rates times ``hit_ratio``; return them.

        Args:
            hit_ratio: fraction of the last block's images classified correctly.
            miss_ratio: fraction classified wrongly.
        """
        for name, value in (("hit_ratio", hit_ratio), ("miss_ratio", miss_ratio)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"RSTDP.adapt_rates: {name} must lie in [0, 1], got {value}")
        self._rates.value = (
            self.a_plus * miss_ratio,
            self.a_minus * miss_ratio,
            self.punish_a_plus * hit_ratio,
            self.punish_a_minus * hit_ratio,
        )
        return self.rates

    def step(self, view: PairView, state: RuleState) -> None:
        """Track first spikes and winners; the update waits for :meth:`reward`."""
        self._observe(view, state)
        self._inbox.register(view, state)

    def reward(self, reward: Tensor | float) -> None:
        """Apply each sample's reward (> 0), punishment (< 0) or nothing (0) to its winners.

        Args:
            reward: ``[B]`` or a float; detached.

        Raises:
            InputError: wrong shape, requires grad, NaN / inf.
            StateError: no forward call since the last reward.
        """
        self._inbox.deliver(
            "RSTDP",
            reward,
            self._apply,
            "pre_time",
            lambda state: (1, int(state["pre_time"].shape[0])),
        )

    def _apply(self, synapse: nn.Module, state: RuleState, sink: UpdateSink, r: Tensor) -> None:
        weight = synapse.weight
        assert isinstance(weight, Tensor)
        r = r.to(weight.device, weight.dtype).sum(0)
        a_plus, a_minus, p_plus, p_minus = self.rates
        magnitude = r.abs()
        coef_plus = torch.where(r > 0, a_plus * magnitude, p_plus * magnitude)
        coef_minus = torch.where(r > 0, a_minus * magnitude, p_minus * magnitude)
        self._flush(synapse, state, sink, coef_plus, coef_minus)
