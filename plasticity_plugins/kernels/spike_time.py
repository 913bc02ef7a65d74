"""Closed-form first-spike times of a LIF neuron and their exact gradients (Fast & Deep).

Fast & Deep (Göltz, Kriener et al., "Fast and energy-efficient neuromorphic deep learning with
first-spike times", Nat. Mach. Intell. 2021) trains on the time of each neuron's first spike,
which for a current-based LIF neuron with exponential synapses has a closed form:

    C du/dt = -g_l (u - E_l) + sum_i w_i H(t - t_i) exp(-(t - t_i) / tau_s),   tau_m = C / g_l

and the spike time ``T`` is the first ``t`` with ``u(t) = theta`` (``u(-inf) = E_l``). Only the
inputs before ``T`` (the causal set) shape it. With ``c = g_l (theta - E_l)``:

* ``tau_m = tau_s = tau`` (Lambert W, principal branch W0)::

      a = sum w_i e^(t_i/tau),   b = sum w_i (t_i/tau) e^(t_i/tau)
      z = -(c/a) e^(b/a),        T = tau (b/a - W0(z))      no spike if z < -1/e (or a <= 0)

* ``tau_m = 2 tau_s``::

      a1 = sum w_i e^(t_i/tau_s),   a2 = sum w_i e^(t_i/tau_m)
      T  = 2 tau_s ln(2 a1 / (a2 + sqrt(a2^2 - 4 a1 c)))   no spike if the root or the log is
                                                           undefined (a2^2 < 4 a1 c, arg <= 0)

Causal set: sort the input times, ``t_(1) <= t_(2) <= ...``; candidate ``k`` uses the first
``k`` inputs and is accepted if ``t_(k) <= T_k <= t_(k+1)`` (``t_(n+1) = inf``); the earliest
accepted candidate is the spike, none means no spike (``T = inf``). This is done for every
sample, neuron and candidate at once: one sort per sample and cumulative sums over the sorted
inputs (a ``[B, N_in, N_out]`` intermediate), no Python loop. The earliest accepted candidate is
found as the earliest window ``[t_(k), t_(k+1)]`` in which the ``k``-input membrane reaches
``theta`` (its maximum there: the window's ends or the membrane's peak, both in closed form);
the two criteria select the same ``k`` (the membrane is below ``theta`` when a window opens,
and crosses it upwards at most once), and this one needs W0 once per neuron instead of once per
candidate (2x to 5x faster on CPU). ``T`` is then the closed form for that causal set.

Gradients (implicit differentiation of ``u(T) = theta``; zero for inputs outside the causal set
and for neurons that do not spike), ``tau_m = tau_s``::

    dT/dw_i = -e^(t_i/tau) (T - t_i) / (a (1 + W0(z)))
    dT/dt_i = -w_i e^(t_i/tau) (T - t_i - tau) / (tau a (1 + W0(z)))

``tau_m = 2 tau_s``, with ``q = e^(-T/tau_m)`` and ``s = sqrt(a2^2 - 4 a1 c)``::

    dT/dw_i = tau_m (q e^(t_i/tau_s) - e^(t_i/tau_m)) / s
    dT/dt_i = w_i (2 q e^(t_i/tau_s) - e^(t_i/tau_m)) / s

In both cases ``sum_i dT/dt_i = 1`` (shifting every input shifts the spike).

Numerics: every exponential is taken relative to the sample's earliest input (the formulas are
shift-equivariant), so nothing overflows while a sample's finite input times span at most 75
``tau_s`` (float32); float32 inputs with a longer span are computed in float64 (and the result
cast back), which holds up to 690 ``tau_s``; longer spans raise :class:`InputError`. ``dT`` grows
like ``1 / (1 + W0(z))`` for grazing spikes (``z -> -1/e``) and like ``1 / s`` (``s -> 0``) and
is infinite for a membrane that exactly touches ``theta`` (which counts as a spike): the
reference clips such updates (SPECS.md §3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from ..errors import InputError
from .lambertw import lambertw

__all__ = ["SpikeTimeParams", "first_spike_times"]


@dataclass(frozen=True)
class SpikeTimeParams:
    """Parameters of the current-based LIF neuron with exponential synapses.

    Attributes:
        tau_s: synaptic time constant (``> 0``).
        tau_ratio: ``tau_m / tau_s``: ``1`` (Lambert W form) or ``2`` (square-root form).
        theta: firing threshold (``> e_l``).
        e_l: leak (resting) potential.
        g_l: leak conductance (``> 0``); the capacitance is ``C = g_l tau_m``. The Fast & Deep
            reference uses ``C = 1``: ``g_l = 1`` for ``tau_m = tau_s = 1``, ``g_l = 0.5`` for
            ``tau_m = 2 tau_s = 2``.

    Example:
        >>> p = SpikeTimeParams(tau_s=1.0, tau_ratio=2, g_l=0.5)
        >>> p.tau_m, p.capacitance, p.c
        (2.0, 1.0, 0.5)
    """

    tau_s: float = 1.0
    tau_ratio: int = 1
    theta: float = 1.0
    e_l: float = 0.0
    g_l: float = 1.0

    def __post_init__(self) -> None:
        if self.tau_ratio not in (1, 2):
            raise InputError(
                f"SpikeTimeParams.tau_ratio (tau_m / tau_s) must be 1 or 2 (the two closed "
                f"forms), got {self.tau_ratio!r}"
            )
        for name in ("tau_s", "theta", "e_l", "g_l"):
            if not math.isfinite(getattr(self, name)):
                raise InputError(
                    f"SpikeTimeParams.{name} must be finite, got {getattr(self, name)}"
                )
        if not self.tau_s > 0.0:
            raise InputError(f"SpikeTimeParams.tau_s must be > 0, got {self.tau_s}")
        if not self.g_l > 0.0:
            raise InputError(f"SpikeTimeParams.g_l must be > 0, got {self.g_l}")
        if not self.theta > self.e_l:
            raise InputError(
                f"SpikeTimeParams needs theta > e_l (a neuron at rest below threshold), got "
                f"theta={self.theta}, e_l={self.e_l}"
            )

    @property
    def tau_m(self) -> float:
        """Membrane time constant ``tau_ratio * tau_s``."""
        return float(self.tau_ratio * self.tau_s)

    @property
    def capacitance(self) -> float:
        """Membrane capacitance ``C = g_l tau_m``."""
        return self.g_l * self.tau_m

    @property
    def c(self) -> float:
        """``g_l (theta - e_l)``, the threshold term of the closed forms."""
        return self.g_l * (self.theta - self.e_l)


def _check(times: object, weights: object) -> None:
    for name, value in (("times", times), ("weights", weights)):
        if not isinstance(value, Tensor):
            raise InputError(f"first_spike_times: {name} must be a torch.Tensor, got {type(value)}")
        if value.dtype not in (torch.float32, torch.float64):
            raise InputError(
                f"first_spike_times: {name} must be float32 or float64, got {value.dtype}; "
                f"convert it first, e.g. {name}.double()"
            )
    assert isinstance(times, Tensor) and isinstance(weights, Tensor)
    if times.dtype != weights.dtype:
        raise InputError(
            f"first_spike_times: times ({times.dtype}) and weights ({weights.dtype}) must have the "
            "same dtype"
        )
    if times.device != weights.device:
        raise InputError(
            f"first_spike_times: times ({times.device}) and weights ({weights.device}) must be on "
            "the same device"
        )
    if weights.dim() != 2:
        raise InputError(
            f"first_spike_times: weights must be [N_in, N_out], got shape {tuple(weights.shape)}"
        )
    if times.dim() not in (1, 2) or times.shape[-1] != weights.shape[0]:
        raise InputError(
            f"first_spike_times: times must be [B, N_in] or [N_in] with N_in = weights.shape[0] "
            f"= {weights.shape[0]}, got times {tuple(times.shape)} and weights "
            f"{tuple(weights.shape)}"
        )
    if bool(torch.isnan(times).any()):
        raise InputError("first_spike_times: times contain NaN (use +inf for 'no input spike')")
    if bool((times == -math.inf).any()):
        raise InputError("first_spike_times: times contain -inf (use +inf for 'no input spike')")
    if not bool(torch.isfinite(weights).all()):
        raise InputError("first_spike_times: weights contain NaN or inf")


def _solve(
    times: Tensor, weights: Tensor, p: SpikeTimeParams
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Vectorised causal-set search.

    Returns ``(T, kstar, f1, f2, t0, rank)``: spike times ``[B, N_out]``; index of the accepted
    candidate in sorted order (``-1``: no spike); the per-neuron factors of the gradient
    (``tau_m = tau_s``: ``f1 = 1 / (a (1 + W0))``, ``f2`` unused (``= f1``);
    ``tau_m = 2 tau_s``: ``f1 = q`` and ``f2 = 1 / s``, both relative to ``t0``); the per-sample
    shift ``t0`` ``[B, 1]``; the sorted position of each input ``[B, N_in]``.
    """
    batch, n_in = times.shape
    n_out = weights.shape[1]
    inf = math.inf
    sorted_t, order = torch.sort(times, dim=1, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(n_in, device=times.device).expand(batch, n_in)
    )
    silent = torch.full((batch, n_out), -1, dtype=torch.long, device=times.device)
    if n_in == 0:
        zeros = times.new_zeros((batch, n_out))
        return times.new_full((batch, n_out), inf), silent, zeros, zeros, zeros[:, :1], rank
    t0 = sorted_t[:, :1]  # earliest input of each sample: the exponentials' reference
    t0 = torch.where(torch.isfinite(t0), t0, torch.zeros_like(t0))
    finite = torch.isfinite(sorted_t)
    next_t = torch.cat([sorted_t[:, 1:], sorted_t.new_full((batch, 1), inf)], dim=1)
    next_finite = torch.isfinite(next_t)
    x = torch.where(finite, sorted_t - t0, torch.zeros_like(sorted_t))  # [B, N_in], >= 0
    x_next = torch.where(next_finite, next_t - t0, torch.zeros_like(next_t))
    w_sorted = weights[order]  # [B, N_in, N_out]
    c = p.c
    minus_inf = torch.tensor(-inf, dtype=times.dtype, device=times.device)

    def at(values: Tensor, where: Tensor) -> Tensor:  # per-neuron value of candidate kstar
        return values.gather(1, where[:, None, :].expand(-1, 1, values.shape[2])).squeeze(1)

    # The earliest candidate k whose membrane (first k inputs) reaches theta inside its window
    # [t_(k), t_(k+1)] is the earliest one with t_(k) <= T_k <= t_(k+1): the membrane before
    # t_(k) stayed below theta, and the k-input membrane crosses theta upwards at most once.
    # Only the window maximum is needed (no Lambert W), so W0 is taken once per neuron.
    # The membrane is u_k(t) - E_l = f_k(t) / g_l; the maximum is at an end or at the peak.
    if p.tau_ratio == 1:
        tau = p.tau_s
        e = torch.where(finite, torch.exp(x / tau), torch.zeros_like(x))
        a = torch.cumsum(w_sorted * e[..., None], dim=1)
        b = torch.cumsum(w_sorted * (x / tau * e)[..., None], dim=1)
        # f_k(t) = (a (t - t0)/tau - b) e^(-(t - t0)/tau), peak at (t - t0)/tau = 1 + b/a (a > 0)
        xk, xn = (x / tau)[..., None], (x_next / tau)[..., None]
        left = (a * xk - b) * torch.exp(-xk)
        right = torch.where(next_finite[..., None], (a * xn - b) * torch.exp(-xn), minus_inf)
        a_safe = torch.where(a > 0.0, a, torch.ones_like(a))
        peak_x = 1.0 + b / a_safe
        peak_in = (a > 0.0) & (peak_x >= xk) & ((peak_x <= xn) | ~next_finite[..., None])
        peak = torch.where(peak_in, a_safe * torch.exp(-peak_x), minus_inf)
    else:
        es = torch.where(finite, torch.exp(x / p.tau_s), torch.zeros_like(x))
        em = torch.where(finite, torch.exp(x / p.tau_m), torch.zeros_like(x))
        a1 = torch.cumsum(w_sorted * es[..., None], dim=1)
        a2 = torch.cumsum(w_sorted * em[..., None], dim=1)
        # f_k(t) = a2 q - a1 q^2, q = e^(-(t - t0)/tau_m); peak a2^2 / (4 a1) at q = a2 / (2 a1)
        qk = torch.exp(-x / p.tau_m)[..., None]
        qn = torch.where(next_finite, torch.exp(-x_next / p.tau_m), torch.zeros_like(x))[..., None]
        left = a2 * qk - a1 * qk * qk
        right = torch.where(next_finite[..., None], a2 * qn - a1 * qn * qn, minus_inf)
        a1_safe = torch.where(a1 > 0.0, a1, torch.ones_like(a1))
        peak_q = a2 / (2.0 * a1_safe)
        peak_in = (a1 > 0.0) & (a2 > 0.0) & (peak_q <= qk) & (peak_q >= qn)
        peak = torch.where(peak_in, a2 * peak_q * 0.5, minus_inf)
    reach = (torch.maximum(torch.maximum(left, right), peak) >= c) & finite[..., None]
    # max(dim).indices returns the first maximum like argmax, and is much faster on uint8.
    kstar = reach.to(torch.uint8).max(dim=1).indices  # [B, N_out]: earliest window reaching theta
    spikes = reach.any(dim=1)
    if p.tau_ratio == 1:
        a_k, b_k = at(a, kstar), at(b, kstar)
        ok = spikes & (a_k > 0.0)
        a_k = torch.where(ok, a_k, torch.ones_like(a_k))
        ratio = b_k / a_k
        w0 = lambertw(-(c / a_k) * torch.exp(ratio))
        ok = ok & torch.isfinite(w0)  # z < -1/e: grazes theta within rounding
        t_k = t0 + tau * (ratio - w0)
        f1 = 1.0 / (a_k * (1.0 + w0))
        f2 = f1
    else:
        a1_k, a2_k = at(a1, kstar), at(a2, kstar)
        disc = a2_k * a2_k - 4.0 * c * a1_k
        root = torch.sqrt(torch.clamp_min(disc, 0.0))
        ok = spikes & (disc >= 0.0) & (a1_k > 0.0) & (a2_k + root > 0.0)
        a1_k = torch.where(ok, a1_k, torch.ones_like(a1_k))
        den = torch.where(ok, a2_k + root, torch.ones_like(a2_k))
        t_k = t0 + p.tau_m * torch.log(2.0 * a1_k / den)
        f1 = den / (2.0 * a1_k)  # q = exp(-(T - t0) / tau_m)
        f2 = 1.0 / torch.where(ok, root, torch.ones_like(root))
    # rounding can put T a hair outside its window: the spike is inside it
    t_k = torch.minimum(torch.maximum(t_k, sorted_t.gather(1, kstar)), next_t.gather(1, kstar))
    t_out = torch.where(ok, t_k, inf)
    zero = torch.zeros((), dtype=times.dtype, device=times.device)
    f1, f2 = torch.where(ok, f1, zero), torch.where(ok, f2, zero)
    return t_out, torch.where(ok, kstar, silent), f1, f2, t0, rank


class _FirstSpikeTime(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, times: Tensor, weights: Tensor, params: SpikeTimeParams
    ) -> Tensor:
        t_out, kstar, f1, f2, t0, rank = _solve(times, weights, params)
        ctx.save_for_backward(times, weights, t_out, kstar, f1, f2, t0, rank)
        ctx.params = params  # type: ignore[attr-defined]
        return t_out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        times, weights, t_out, kstar, f1, f2, t0, rank = ctx.saved_tensors
        p: SpikeTimeParams = ctx.params
        need_t, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        spikes = kstar >= 0
        # causal[b, i, j]: input i is in the causal set of neuron j of sample b
        causal = rank[:, :, None] <= kstar[:, None, :]
        finite = torch.isfinite(times)
        x = torch.where(finite, times - t0, torch.zeros_like(times))  # [B, N_in]
        # neurons without upstream gradient contribute nothing, even where their factor is inf
        # (a spike exactly grazing theta: 1 + W0 = 0 or s = 0)
        g = torch.where(spikes & (grad != 0), grad, torch.zeros_like(grad))
        zero = torch.zeros((), dtype=times.dtype, device=times.device)
        grad_t = grad_w = None
        if p.tau_ratio == 1:
            tau = p.tau_s
            e = torch.where(finite, torch.exp(x / tau), torch.zeros_like(x))
            big_t = torch.where(spikes, t_out - t0, torch.zeros_like(t_out))  # [B, N_out]
            gf = torch.where(g != 0, g * f1, zero)
            lag = big_t[:, None, :] - x[:, :, None]  # T - t_i, [B, N_in, N_out]
            if need_w:
                dw = torch.where(causal, e[..., None] * lag, zero)
                grad_w = 0.0 - torch.einsum("bij,bj->ij", dw, gf)  # +0.0, not -0.0
            if need_t:
                dt_ = torch.where(causal, weights[None] * (lag - tau), zero)
                grad_t = 0.0 - (e / tau) * torch.einsum("bij,bj->bi", dt_, gf)
        else:
            es = torch.where(finite, torch.exp(x / p.tau_s), torch.zeros_like(x))
            em = torch.where(finite, torch.exp(x / p.tau_m), torch.zeros_like(x))
            q, gs = f1, torch.where(g != 0, g * f2, zero)
            if need_w:
                dw = torch.where(causal, q[:, None, :] * es[..., None] - em[..., None], zero)
                grad_w = p.tau_m * torch.einsum("bij,bj->ij", dw, gs) + 0.0
            if need_t:
                dt_ = torch.where(
                    causal,
                    weights[None] * (2.0 * q[:, None, :] * es[..., None] - em[..., None]),
                    zero,
                )
                grad_t = torch.einsum("bij,bj->bi", dt_, gs) + 0.0
        return grad_t, grad_w, None


def first_spike_times(
    times: Tensor, weights: Tensor, params: SpikeTimeParams | None = None
) -> Tensor:
    """First spike time of every neuron of a layer, exactly, with analytic gradients.

    See the module docstring for the equations. Differentiable with respect to ``times`` and
    ``weights`` (a custom autograd function: the gradients are the closed forms, not autograd
    through the search); zero gradient for inputs outside a neuron's causal set and for neurons
    that do not spike.

    Args:
        times: input spike times ``[B, N_in]`` (or ``[N_in]``), float32 or float64, ``+inf`` for
            an input that does not spike.
        weights: ``[N_in, N_out]``, same dtype and device as ``times``.
        params: the neuron (default :class:`SpikeTimeParams` ``()``: ``tau_m = tau_s = 1``,
            ``theta = 1``, ``E_l = 0``, ``g_l = 1``).

    Returns:
        Spike times ``[B, N_out]`` (``[N_out]`` for 1-D ``times``), ``+inf`` where a neuron does
        not spike.

    Raises:
        InputError: a non-tensor, an integer or half-precision dtype, mismatched dtypes, devices
            or shapes (``times.shape[-1] != weights.shape[0]``), NaN or ``-inf`` times, non-finite
            weights, a sample whose input times span more than 690 ``tau_s``.

    Example:
        >>> times = torch.tensor([[0.15, 0.5, 1.0]], dtype=torch.float64, requires_grad=True)
        >>> weights = torch.tensor([[2.0], [1.5], [1.0]], dtype=torch.float64, requires_grad=True)
        >>> t_spike = first_spike_times(times, weights)  # tau_m = tau_s = theta = g_l = 1
        >>> round(t_spike.item(), 10)  # the input at t = 1.0 comes after the spike
        0.7896356028
        >>> t_spike.sum().backward()
        >>> weights.grad.squeeze(1)  # earlier spike for a larger weight; 0 for the late input
        tensor([-0.2865, -0.1841,  0.0000], dtype=torch.float64)
        >>> round(times.grad.sum().item(), 12)  # shifting every input shifts the spike
        1.0
        >>> first_spike_times(times.detach(), weights.detach() / 4)  # too weak: no spike
        tensor([[inf]], dtype=torch.float64)
    """
    _check(times, weights)
    p = SpikeTimeParams() if params is None else params
    if not isinstance(p, SpikeTimeParams):
        raise InputError(f"first_spike_times: params must be SpikeTimeParams, got {type(p)}")
    batched = times if times.dim() == 2 else times[None]
    dtype = _compute_dtype(batched, p)
    result: Tensor = _FirstSpikeTime.apply(batched.to(dtype), weights.to(dtype), p)
    result = result.to(times.dtype)
    return result if times.dim() == 2 else result[0]


_MAX_SPAN = {torch.float32: 75.0, torch.float64: 690.0}
"""Largest span of a sample's finite input times, in ``tau_s``, computed in each dtype."""


def _compute_dtype(times: Tensor, p: SpikeTimeParams) -> torch.dtype:
    """float64 for float32 inputs whose span would overflow ``exp`` in float32; else the dtype."""
    if times.numel() == 0:
        return times.dtype
    times = times.detach()
    finite = torch.isfinite(times)
    latest = torch.where(finite, times, -math.inf).amax(dim=1)
    earliest = torch.where(finite, times, math.inf).amin(dim=1)
    span = float((latest - earliest).amax()) / p.tau_s  # -inf if no sample has an input
    if span <= _MAX_SPAN[times.dtype]:
        return times.dtype
    if span <= _MAX_SPAN[torch.float64]:
        return torch.float64
    raise InputError(
        f"first_spike_times: the input spike times of a sample span {span:.4g} tau_s; the closed "
        f"forms overflow beyond {_MAX_SPAN[torch.float64]:g} tau_s (float64). Rescale the time "
        f"unit (times and tau_s) or split the inputs."
    )
