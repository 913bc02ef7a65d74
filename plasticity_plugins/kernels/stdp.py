"""Spike-timing-dependent plasticity windows as batched GEMMs.

Every STDP variant here is a sum of outer products of a post-synaptic factor (synapse output
layout) and a pre-synaptic factor (synapse input layout): a causal term (pre no later than post)
and an anti-causal term, in this package's sign and timing convention (SPECS.md, "Sign and timing
convention")::

    dw = a_plus * f_plus(w) * sum causal(post) (x) causal(pre)
       - a_minus * f_minus(w) * sum anticausal(post) (x) anticausal(pre)

The sums run over time steps, samples and (for convolutions) positions, and each is ONE GEMM
(Linear) or ONE weight-gradient convolution (Conv1d / Conv2d, any stride, padding, dilation and
groups) through :func:`~plasticity_plugins.kernels.synapse.outer_accumulate_`: no
``[B, out, in]`` tensor is formed. The weight-dependent factors ``f_plus(w)``, ``f_minus(w)``
(see :func:`weight_factors`) multiply the per-synapse sums, so they cost one elementwise pass.
For the additive rule on a Linear synapse both terms are stacked into one GEMM; on a convolution
each term is its own weight-gradient convolution (the same work, without copying the large
post-synaptic maps into a stack), with the amplitudes carried by the smaller pre-synaptic rows and
2-D inputs in channels-last order (oneDNN's fast layout for the weight gradient). A one-step
call of the additive pair rule (a single-step network's path) has its own kernel, Linear or Conv:
two products straight from the spikes and traces, with no ``[T, B]`` bookkeeping. Pair and
triplet STDP and :func:`accumulate_terms_` on a CPU Conv1d / Conv2d with stride 1, dilation 1
and one group run, step by step, a C++ kernel (``cuda/stdp_conv2d.cpp``) that visits only the
nonzero spikes of each term's spike factor, and pair STDP on a CPU Linear another
(``cuda/stdp_linear.cpp``, handed a whole call's steps at once, dense products for a term whose
spikes exceed 20 % at a step); the torch ops are their fallback and their test oracle.

Pair STDP with exponential windows (``d = exp(-1 / tau)``)::

    x_pre[t]  = d_pre  * x_pre[t-1]  + s_pre[t]                  (includes this step's spike)
    x_post[t] = d_post * x_post[t-1] + s_post[t]
    causal:     s_post[t] (x) x_pre[t]
    anticausal: (d_post * x_post[t-1]) (x) s_pre[t]

A pre spike at ``t0`` and a post spike at ``t0 + d`` give ``a_plus * exp(-d / tau_pre)``; the
reverse order gives ``-a_minus * exp(-d / tau_post)``; a same-step pair is potentiation only (the
anti-causal term sees the post trace BEFORE this step's post spike). Triplet STDP (Pfister &
Gerstner 2006) and the first-spike rule of Mozafari et al. 2019 are the other two windows here.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from ._extension_build import cpu_ops_accept
from .synapse import (
    ConvGeometry,
    gradient_layout,
    outer_accumulate_,
    outer_per_sample_accumulate_,
    receptive_fields,
    stacked_rows,
)
from .traces import TraceKind, trace_sequence, trace_step

WeightDependence = Literal["additive", "soft", "mozafari"]
WEIGHT_DEPENDENCES: tuple[str, ...] = ("additive", "soft", "mozafari")


class STDPTerms(NamedTuple):
    """The four factors of an STDP update over one call, time-first ``[T, B, ...]``.

    ``dw = a_plus * sum causal_post (x) causal_pre - a_minus * sum anti_post (x) anti_pre``.
    """

    causal_post: Tensor
    causal_pre: Tensor
    anti_post: Tensor
    anti_pre: Tensor

    def shifted(self, previous: STDPTerms | None) -> STDPTerms:
        """The terms one step later: step ``t`` holds step ``t - 1``'s terms (``previous``'s
        last step, or zeros, at ``t = 0``). Used for eligibilities fed by last step's terms."""
        out = []
        for current, before in zip(self, previous or (None,) * 4, strict=True):
            first = torch.zeros_like(current[:1]) if before is None else before[-1:]
            out.append(torch.cat([first, current[:-1]]))
        return STDPTerms(*out)


def weight_factors(
    weight: Tensor,
    dependence: WeightDependence,
    w_min: float | None = None,
    w_max: float | None = None,
    mu: float = 1.0,
) -> tuple[Tensor, Tensor] | None:
    """The weight-dependent factors ``(f_plus(w), f_minus(w))`` of an STDP update.

    * ``"additive"``: ``f = 1`` (returns None: the update does not depend on ``w``);
    * ``"soft"``: ``f_plus = (w_max - w)^mu``, ``f_minus = (w - w_min)^mu`` (soft bounds; ``mu = 1``
      is the multiplicative rule of van Rossum et al. 2000, ``mu -> 0`` approaches additive);
    * ``"mozafari"``: ``f_plus = f_minus = (w - w_min)(w_max - w)``, Mozafari et al.'s
      ``w (1 - w)`` for bounds [0, 1] (SpykeTorch's "stabilizer").

    The bases are clamped at 0, so a weight outside the bounds is pushed by neither factor
    (instead of a NaN power or a sign flip).

    Args:
        weight: the synapse weight.
        dependence: ``"additive"``, ``"soft"`` or ``"mozafari"``.
        w_min: lower bound (needed by ``"soft"`` and ``"mozafari"``).
        w_max: upper bound (needed by ``"soft"`` and ``"mozafari"``).
        mu: exponent of the soft bounds.

    Returns:
        ``(f_plus, f_minus)`` with the weight's shape (the same tensor twice for
        ``"mozafari"``), or None for ``"additive"``.

    Example:
        >>> w = torch.tensor([0.0, 0.25, 1.0])
        >>> weight_factors(w, "mozafari", 0.0, 1.0)[0]
        tensor([0.0000, 0.1875, 0.0000])
        >>> weight_factors(w, "soft", 0.0, 1.0)
        (tensor([1.0000, 0.7500, 0.0000]), tensor([0.0000, 0.2500, 1.0000]))
    """
    if dependence == "additive":
        return None
    if dependence not in WEIGHT_DEPENDENCES:
        raise ValueError(
            f"unknown weight dependence {dependence!r}; expected one of {WEIGHT_DEPENDENCES}"
        )
    if w_min is None or w_max is None:
        raise ValueError(f"weight dependence {dependence!r} needs both w_min and w_max")
    w = weight.detach()
    above = (w - w_min).clamp_(min=0)
    below = (w_max - w).clamp_(min=0)
    if dependence == "mozafari":
        factor = above.mul_(below)
        return factor, factor
    if mu != 1.0:
        below.pow_(mu)
        above.pow_(mu)
    return below, above


def accumulate_terms_(
    acc: Tensor,
    terms: STDPTerms,
    *,
    a_plus: float,
    a_minus: float,
    alpha: float,
    conv: ConvGeometry | None = None,
    factors: tuple[Tensor, Tensor] | None = None,
    post_scale: Tensor | None = None,
) -> Tensor:
    """``acc += alpha * dw`` for STDP ``terms`` (summed over steps, samples and positions).

    ``dw = a_plus f_plus(w) sum causal_post (x) causal_pre
    - a_minus f_minus(w) sum anti_post (x) anti_pre``: one GEMM for the additive rule on a
    Linear synapse (both terms stacked along the sample axis), otherwise one GEMM / weight
    convolution per term.

    Args:
        acc: accumulator with the weight's shape.
        terms: ``[T, B, ...]`` factors.
        a_plus: causal amplitude.
        a_minus: anti-causal amplitude (positive for depression).
        alpha: scale of ``dw`` in ``acc``.
        conv: convolution geometry; None for Linear.
        factors: ``(f_plus, f_minus)`` from :func:`weight_factors`; None for additive.
        post_scale: optional ``[T, B]`` (or ``[B]``) per-step, per-sample scale of the
            post-synaptic factors (a reward), applied along the batch axis.

    Returns:
        ``acc``.
    """
    steps, batch = terms.causal_post.shape[:2]
    if _compiled_conv_step_applies(terms.anti_pre, terms.causal_post, terms.anti_post, acc, conv):
        assert conv is not None
        causal_sum, anti_sum = _compiled_terms_sums(acc, terms, conv, post_scale)
        _add_weighted_sums(acc, causal_sum, anti_sum, alpha * a_plus, -alpha * a_minus, factors)
        return acc
    rows = steps * batch
    scale = _row_scale(post_scale, steps, batch, terms.causal_post)
    if factors is None:
        # both terms stacked along the sample axis: one weight-gradient convolution / GEMM,
        # each operand written once (the pre rows in the layout the 2-D one prefers)
        # The amplitudes and the per-row scale go on the pre rows, the smaller side of a conv
        # (a row's outer product is the same whichever factor carries its scale).
        if conv is not None:
            # one weight-gradient convolution per term: the same work as one on the stacked
            # rows, without copying the (large) post-synaptic maps into a stack
            for post, pre, amplitude in (
                (terms.causal_post, terms.causal_pre, a_plus),
                (terms.anti_post, terms.anti_pre, -a_minus),
            ):
                rows_pre = stacked_rows([pre], [amplitude], len(conv.stride) == 2)
                if scale is not None:
                    rows_pre.mul_(scale)
                outer_accumulate_(acc, post.reshape(rows, *post.shape[2:]), rows_pre, alpha, conv)
            return acc
        post = stacked_rows([terms.causal_post, terms.anti_post], [1.0, 1.0])
        pre = stacked_rows([terms.causal_pre, terms.anti_pre], [a_plus, -a_minus])
        if scale is not None:
            pre.mul_(scale.repeat(2, *([1] * (scale.dim() - 1))))
        return outer_accumulate_(acc, post, pre, alpha, conv)
    posts = []
    for post, amplitude in ((terms.causal_post, a_plus), (terms.anti_post, -a_minus)):
        flat = post.reshape(rows, *post.shape[2:]) * amplitude
        posts.append(flat if scale is None else flat.mul_(scale))
    pres = [p.reshape(rows, *p.shape[2:]) for p in (terms.causal_pre, terms.anti_pre)]
    causal = outer_accumulate_(torch.zeros_like(acc), posts[0], pres[0], 1.0, conv)
    anti = outer_accumulate_(torch.zeros_like(acc), posts[1], pres[1], 1.0, conv)
    causal.mul_(factors[0]).addcmul_(anti, factors[1])
    return acc.add_(causal, alpha=alpha)


def accumulate_terms_per_sample_(
    acc: Tensor,
    terms: STDPTerms,
    *,
    a_plus: float,
    a_minus: float,
    alpha: float,
    conv: ConvGeometry | None = None,
    post_scale: Tensor | None = None,
) -> Tensor:
    """Like :func:`accumulate_terms_` (additive) but keeping samples apart: ``acc[b] += ...``.

    Only for rules whose state is inherently per sample (an eligibility trace that a per-sample
    reward reads later, MSTDPET): ``acc`` is ``[B, *weight.shape]``.

    Args:
        acc: ``[B, *weight.shape]``.
        terms: ``[T, B, ...]`` factors.
        a_plus, a_minus, alpha, conv: as in :func:`accumulate_terms_`.
        post_scale: optional ``[T, B]`` (or ``[B]``) scale of the post factors.

    Returns:
        ``acc``.
    """
    steps, batch = terms.causal_post.shape[:2]
    if _compiled_conv_step_applies(
        terms.anti_pre, terms.causal_post, terms.anti_post, acc[0], conv
    ):
        assert conv is not None
        causal_sum, anti_sum = _compiled_terms_sums(acc, terms, conv, post_scale, per_sample=True)
        return acc.add_(causal_sum, alpha=alpha * a_plus).add_(anti_sum, alpha=-alpha * a_minus)
    posts = []
    for post, amplitude in ((terms.causal_post, a_plus), (terms.anti_post, -a_minus)):
        scaled = post * amplitude
        if post_scale is not None:
            scale = post_scale.to(post.dtype).expand(steps, batch)
            scaled.mul_(scale.reshape(steps, batch, *([1] * (post.dim() - 2))))
        posts.append(scaled)
    pres = [terms.causal_pre, terms.anti_pre]
    return outer_per_sample_accumulate_(acc, torch.cat(posts), torch.cat(pres), alpha, conv)


def _row_scale(scale: Tensor | None, steps: int, batch: int, like: Tensor) -> Tensor | None:
    """A ``[T, B]`` / ``[B]`` scale as a column ``[T*B, 1, ...]`` for rows of ``like``."""
    if scale is None:
        return None
    scale = scale.to(like.dtype).expand(steps, batch).reshape(steps * batch)
    return scale.reshape(-1, *([1] * (like.dim() - 2)))


def pair_stdp_terms(
    pre: Tensor,
    post: Tensor,
    pre_trace: Tensor,
    post_trace: Tensor,
    *,
    pre_decay: float,
    post_decay: float,
    kind: TraceKind = "all_to_all",
) -> tuple[STDPTerms, Tensor, Tensor]:
    """The pair-STDP terms of one call and the traces after it (module docstring).

    Args:
        pre: ``[T, B, *in]`` pre-synaptic spikes.
        post: ``[T, B, *out]`` post-synaptic spikes (synapse output layout).
        pre_trace: ``[B, *in]`` before the call.
        post_trace: ``[B, *out]`` before the call.
        pre_decay: ``exp(-1 / tau_pre)``.
        post_decay: ``exp(-1 / tau_post)``.
        kind: ``"all_to_all"`` or ``"nearest"`` traces.

    Returns:
        ``(terms, pre_trace, post_trace)``.
    """
    pre_traces = trace_sequence(pre, pre_trace, pre_decay, kind)
    post_traces = trace_sequence(post, post_trace, post_decay, kind)
    post_before = _before(post_traces, post_trace, post_decay)
    terms = STDPTerms(post, pre_traces, post_before, pre)
    return terms, pre_traces[-1], post_traces[-1]


def _before(traces: Tensor, initial: Tensor, decay: float) -> Tensor:
    """Each step's trace decayed to that step, BEFORE that step's spikes are added."""
    out = torch.empty_like(traces)
    torch.mul(initial, decay, out=out[0])
    if traces.shape[0] > 1:
        torch.mul(traces[:-1], decay, out=out[1:])
    return out


def pair_stdp_accumulate_(
    acc: Tensor,
    pre: Tensor,
    post: Tensor,
    pre_trace: Tensor,
    post_trace: Tensor,
    *,
    a_plus: float,
    a_minus: float,
    pre_decay: float,
    post_decay: float,
    alpha: float,
    kind: TraceKind = "all_to_all",
    conv: ConvGeometry | None = None,
    factors: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Accumulate ``alpha * dw`` of pair STDP over a sequence into ``acc``; return new traces.

    Args:
        acc: accumulator with the weight's shape (e.g. ``weight.grad``).
        pre: ``[T, B, *in]`` pre-synaptic spikes (what entered the synapse).
        post: ``[T, B, *out]`` post-synaptic spikes, in the synapse's output layout.
        pre_trace: ``[B, *in]`` pre trace before the sequence.
        post_trace: ``[B, *out]`` post trace before the sequence.
        a_plus: potentiation amplitude (causal term).
        a_minus: depression amplitude (anti-causal term), usually positive.
        pre_decay: ``exp(-1 / tau_pre)``.
        post_decay: ``exp(-1 / tau_post)``.
        alpha: scale of ``dw`` when added to ``acc`` (e.g. ``-1 / B`` for a mean-over-batch
            update written as a gradient).
        kind: ``"all_to_all"`` or ``"nearest"`` traces.
        conv: geometry for a convolution synapse; None for Linear.
        factors: ``(f_plus(w), f_minus(w))`` from :func:`weight_factors`; None for additive.

    Returns:
        ``(pre_trace, post_trace)`` after the sequence.

    Example:
        >>> acc = torch.zeros(1, 1)
        >>> pre = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
        >>> post = torch.tensor([0.0, 0.0, 1.0]).reshape(3, 1, 1)
        >>> _ = pair_stdp_accumulate_(acc, pre, post, torch.zeros(1, 1), torch.zeros(1, 1),
        ...     a_plus=1.0, a_minus=1.0, pre_decay=0.5, post_decay=0.5, alpha=1.0)
        >>> acc
        tensor([[0.2500]])
    """
    if conv is not None and _compiled_conv_step_applies(pre, post, post_trace, acc, conv):
        # A CPU Conv1d / Conv2d: the C++ kernel, one step at a time (it visits only the nonzero
        # spikes and keeps a step's maps in cache: several times faster than the dense weight
        # gradients, and than the sequence path's [T, B] maps for any T)
        assert conv is not None
        causal_sum, anti_sum = torch.zeros_like(acc), torch.zeros_like(acc)
        for pre_t, post_t in zip(pre, post, strict=True):
            pre_trace = trace_step(pre_trace, pre_t, pre_decay, kind)
            post_trace = _compiled_conv_step(
                causal_sum, anti_sum, pre_t, pre_trace, post_t, post_trace, post_decay, kind, conv
            )
        _add_weighted_sums(
            acc, causal_sum, anti_sum, alpha * a_plus, -alpha * a_minus * post_decay, factors
        )
        return pre_trace, post_trace
    if _compiled_linear_applies(pre, post, pre_trace, post_trace, acc, conv):
        # A CPU Linear: the C++ kernel, all the call's steps in one call (it visits only the
        # nonzero spikes, in one pass over acc per step: several times faster than the two
        # dense products)
        causal_scale, anti_scale = alpha * a_plus, -alpha * a_minus * post_decay
        linear_op = torch.ops.plasticity_plugins_cpu.pair_stdp_linear_
        decays = (pre_decay, post_decay, kind == "nearest")
        if factors is None:
            return linear_op(
                acc, pre, pre_trace, post, post_trace, *decays, causal_scale, anti_scale
            )
        # the two sums apart, for the weight factors (the traces come out twice)
        sums = (torch.zeros_like(acc), torch.zeros_like(acc))
        linear_op(sums[0], pre, pre_trace, post, post_trace, *decays, 1.0, 0.0)
        pre_trace, post_trace = linear_op(
            sums[1], pre, pre_trace, post, post_trace, *decays, 0.0, 1.0
        )
        _add_weighted_sums(acc, *sums, causal_scale, anti_scale, factors)
        return pre_trace, post_trace
    if pre.shape[0] == 1 and factors is None:
        # One step of the additive rule (a single-step network's path, paid at every step next
        # to a forward of the same size): one product per term straight from the spikes and
        # traces, without the sequence path's [T, B] bookkeeping. The spikes are converted to
        # the weight gradient's layout once (a no-op for Linear / Conv1d): both products read
        # them, and the traces inherit that layout, so the post trace handed back at the next
        # step is already in it.
        pre, post = gradient_layout(pre[0], conv), gradient_layout(post[0], conv)
        pre_trace = trace_step(pre_trace, pre, pre_decay, kind)
        outer_accumulate_(acc, post, pre_trace, alpha * a_plus, conv)
        # anti-causal post factor d_post * x_post[t-1]: the decay goes into the amplitude (a
        # scalar on the small result) instead of a decayed copy of the trace
        outer_accumulate_(acc, post_trace, pre, -alpha * a_minus * post_decay, conv)
        return pre_trace, trace_step(post_trace, post, post_decay, kind)
    terms, pre_trace, post_trace = pair_stdp_terms(
        pre, post, pre_trace, post_trace, pre_decay=pre_decay, post_decay=post_decay, kind=kind
    )
    accumulate_terms_(
        acc, terms, a_plus=a_plus, a_minus=a_minus, alpha=alpha, conv=conv, factors=factors
    )
    return pre_trace, post_trace


def _compiled_linear_applies(
    pre: Tensor,
    post: Tensor,
    pre_trace: Tensor,
    post_trace: Tensor,
    acc: Tensor,
    conv: ConvGeometry | None,
) -> bool:
    """Whether pair STDP can run through the C++ kernel ``pair_stdp_linear_``
    (``cuda/stdp_linear.cpp``): a CPU Linear synapse, float32 / float64 throughout, a contiguous
    accumulator, and the library built."""
    return (
        conv is None
        and pre.dim() == 3
        and acc.dim() == 2
        and acc.is_contiguous()
        and cpu_ops_accept(acc, pre, post, pre_trace, post_trace)
    )


def _compiled_conv_step_applies(
    pre: Tensor, post: Tensor, post_trace: Tensor, acc: Tensor, conv: ConvGeometry | None
) -> bool:
    """Whether pair STDP can run through the C++ kernel ``pair_stdp_conv2d_step``
    (``cuda/stdp_conv2d.cpp``): a CPU Conv1d / Conv2d synapse with stride 1, dilation 1, one
    group, padding below the kernel size and kernels at most 8 wide, float32 / float64 spikes,
    and the library built."""
    if conv is None or pre.dim() != 3 + len(conv.stride) or acc.dim() != 2 + len(conv.stride):
        return False
    kernel = acc.shape[2:]
    # the kernel addresses a sample's zero-bordered maps with 32-bit offsets
    bordered_pre = pre.shape[2] * math.prod(
        n + 2 * p + 8 for n, p in zip(pre.shape[3:], conv.padding, strict=True)
    )
    bordered_post = math.prod(n + 2 * k + 8 for n, k in zip(post.shape[3:], kernel, strict=True))
    ones = (1,) * len(conv.stride)
    return (
        max(bordered_pre, bordered_post) < 2**31
        and conv.stride == ones
        and conv.dilation == ones
        and conv.groups == 1
        and all(p < k for p, k in zip(conv.padding, kernel, strict=True))
        and kernel[-1] <= 8
        and cpu_ops_accept(pre, post, post_trace)
    )


def _compiled_conv_step(
    causal_sum: Tensor,
    anti_sum: Tensor,
    pre_value: Tensor,
    pre_trace: Tensor,
    post_value: Tensor,
    post_trace: Tensor,
    post_decay: float,
    kind: TraceKind,
    conv: ConvGeometry,
    trace_spikes: Tensor | None = None,
    advance_trace: bool = True,
    per_sample: bool = False,
) -> Tensor:
    """One step through the C++ kernel (see :func:`_compiled_conv_step_applies`): adds
    ``sum post_value (x) pre_trace`` to ``causal_sum`` and ``sum post_trace (x) pre_value`` to
    ``anti_sum`` (weight-shaped), and returns the post trace advanced by ``trace_spikes``
    (default ``post_value``), or ``post_trace`` itself with ``advance_trace=False``. With
    ``per_sample`` the sums are ``[B, *weight.shape]``. A Conv1d runs as a Conv2d of height 1."""
    if len(conv.stride) == 1:
        as_2d, padding = (lambda t: t.unsqueeze(-2)), (0, *conv.padding)
    else:
        as_2d, padding = (lambda t: t), conv.padding
    kernel_h, kernel_w = as_2d(causal_sum).shape[-2:]
    causal, anti, advanced = torch.ops.plasticity_plugins_cpu.pair_stdp_conv2d_step(
        as_2d(pre_value),
        as_2d(pre_trace),
        as_2d(post_value),
        as_2d(post_trace),
        kernel_h,
        kernel_w,
        *padding,
        post_decay,
        kind == "nearest",
        None if trace_spikes is None else as_2d(trace_spikes),
        advance_trace,
        per_sample,
    )
    causal_sum.add_(causal.view_as(causal_sum))
    anti_sum.add_(anti.view_as(anti_sum))
    return advanced.view_as(post_trace) if advance_trace else post_trace


def _compiled_terms_sums(
    acc: Tensor,
    terms: STDPTerms,
    conv: ConvGeometry,
    post_scale: Tensor | None,
    per_sample: bool = False,
) -> tuple[Tensor, Tensor]:
    """``(sum causal_post (x) causal_pre, sum anti_post (x) anti_pre)`` of ``[T, B]`` terms
    through the C++ kernel, step by step (the spike factors causal_post and anti_pre are sparse),
    a per-sample ``post_scale`` put on the small pre-synaptic factors; shaped like ``acc``."""
    steps, batch = terms.causal_post.shape[:2]
    scales = None
    if post_scale is not None:  # [T, B, 1, ...]: one column per step
        shape = (steps, batch, *([1] * (terms.causal_pre.dim() - 2)))
        scales = post_scale.to(acc.dtype).expand(steps, batch).reshape(shape)
    causal_sum, anti_sum = torch.zeros_like(acc), torch.zeros_like(acc)
    for t, (causal_post, causal_pre, anti_post, anti_pre) in enumerate(zip(*terms, strict=True)):
        if scales is not None:
            causal_pre, anti_pre = causal_pre * scales[t], anti_pre * scales[t]
        _compiled_conv_step(
            causal_sum,
            anti_sum,
            anti_pre,
            causal_pre,
            causal_post,
            anti_post,
            0.0,
            "all_to_all",
            conv,
            advance_trace=False,
            per_sample=per_sample,
        )
    return causal_sum, anti_sum


def _add_weighted_sums(
    acc: Tensor,
    causal_sum: Tensor,
    anti_sum: Tensor,
    causal_scale: float,
    anti_scale: float,
    factors: tuple[Tensor, Tensor] | None,
) -> None:
    """``acc += causal_scale f_plus(w) causal_sum + anti_scale f_minus(w) anti_sum``."""
    if factors is not None:
        causal_sum.mul_(factors[0])
        anti_sum.mul_(factors[1])
    acc.add_(causal_sum, alpha=causal_scale).add_(anti_sum, alpha=anti_scale)


class TripletTraces(NamedTuple):
    """The four traces of triplet STDP (Pfister & Gerstner 2006's ``r1, r2, o1, o2``)."""

    r1: Tensor
    r2: Tensor
    o1: Tensor
    o2: Tensor


def triplet_stdp_terms(
    pre: Tensor,
    post: Tensor,
    traces: TripletTraces,
    *,
    a2_plus: float,
    a3_plus: float,
    a2_minus: float,
    a3_minus: float,
    decays: tuple[float, float, float, float],
    kind: TraceKind = "all_to_all",
) -> tuple[STDPTerms, TripletTraces]:
    """Triplet-STDP terms of one call (amplitudes folded in) and the traces after it.

    Pfister & Gerstner 2006, eqs. 3-4, in this package's timing convention::

        r1, r2 (pre, tau_plus, tau_x), o1, o2 (post, tau_minus, tau_y): traces of the spikes
        causal:     s_post[t] * (a2_plus + a3_plus * o2[t-1]) (x) r1[t]
        anticausal: o1[t-1] (x) s_pre[t] * (a2_minus + a3_minus * r2[t-1])

    where ``r1[t]`` includes this step's pre spike (a same-step pair is potentiation) and
    ``o1[t-1]``, ``o2[t-1]``, ``r2[t-1]`` are decayed to step ``t`` but exclude its spikes (the
    paper's ``t - epsilon``). Use the terms with ``a_plus = a_minus = 1``.

    Args:
        pre: ``[T, B, *in]``; post: ``[T, B, *out]``.
        traces: the traces before the call.
        a2_plus, a3_plus, a2_minus, a3_minus: pair and triplet amplitudes.
        decays: ``exp(-1 / tau)`` for ``(tau_plus, tau_x, tau_minus, tau_y)``.
        kind: ``"all_to_all"`` or ``"nearest"`` traces.

    Returns:
        ``(terms, traces after the call)``.
    """
    d_plus, d_x, d_minus, d_y = decays
    r1 = trace_sequence(pre, traces.r1, d_plus, kind)
    r2 = trace_sequence(pre, traces.r2, d_x, kind)
    o1 = trace_sequence(post, traces.o1, d_minus, kind)
    o2 = trace_sequence(post, traces.o2, d_y, kind)
    causal_post = post * (a2_plus + a3_plus * _before(o2, traces.o2, d_y))
    anti_pre = pre * (a2_minus + a3_minus * _before(r2, traces.r2, d_x))
    terms = STDPTerms(causal_post, r1, _before(o1, traces.o1, d_minus), anti_pre)
    return terms, TripletTraces(r1[-1], r2[-1], o1[-1], o2[-1])


def triplet_stdp_accumulate_(
    acc: Tensor,
    pre: Tensor,
    post: Tensor,
    traces: TripletTraces,
    *,
    a2_plus: float,
    a3_plus: float,
    a2_minus: float,
    a3_minus: float,
    decays: tuple[float, float, float, float],
    alpha: float,
    kind: TraceKind = "all_to_all",
    conv: ConvGeometry | None = None,
    factors: tuple[Tensor, Tensor] | None = None,
) -> TripletTraces:
    """Accumulate ``alpha * dw`` of triplet STDP (:func:`triplet_stdp_terms`) into ``acc``.

    Returns:
        The traces after the sequence.

    Example:
        >>> zeros = TripletTraces(*(torch.zeros(1, 1) for _ in range(4)))
        >>> acc = torch.zeros(1, 1)
        >>> pre = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
        >>> post = torch.tensor([0.0, 1.0, 1.0]).reshape(3, 1, 1)
        >>> _ = triplet_stdp_accumulate_(acc, pre, post, zeros, a2_plus=0.0, a3_plus=1.0,
        ...     a2_minus=0.0, a3_minus=0.0, decays=(0.5, 0.5, 0.5, 0.5), alpha=1.0)
        >>> acc  # first post spike: no earlier post spike, no change; second: 0.25 * 0.5
        tensor([[0.1250]])
    """
    if _compiled_conv_step_applies(pre, post, traces.o1, acc, conv):
        # A CPU Conv1d / Conv2d: the C++ kernel, step by step (see pair_stdp_accumulate_), with
        # the triplet amplitudes on the spikes and o1 advanced by the plain post spikes
        assert conv is not None
        d_plus, d_x, d_minus, d_y = decays
        causal_sum, anti_sum = torch.zeros_like(acc), torch.zeros_like(acc)
        r1, r2, o1, o2 = traces
        for pre_t, post_t in zip(pre, post, strict=True):
            r1 = trace_step(r1, pre_t, d_plus, kind)
            weighted_pre = pre_t * (a2_minus + a3_minus * d_x * r2)
            weighted_post = post_t * (a2_plus + a3_plus * d_y * o2)
            o1_next = _compiled_conv_step(
                causal_sum,
                anti_sum,
                weighted_pre,
                r1,
                weighted_post,
                o1,
                d_minus,
                kind,
                conv,
                post_t,
            )
            r2 = trace_step(r2, pre_t, d_x, kind)
            o1, o2 = o1_next, trace_step(o2, post_t, d_y, kind)
        _add_weighted_sums(acc, causal_sum, anti_sum, alpha, -alpha * d_minus, factors)
        return TripletTraces(r1, r2, o1, o2)
    terms, traces = triplet_stdp_terms(
        pre,
        post,
        traces,
        a2_plus=a2_plus,
        a3_plus=a3_plus,
        a2_minus=a2_minus,
        a3_minus=a3_minus,
        decays=decays,
        kind=kind,
    )
    accumulate_terms_(acc, terms, a_plus=1.0, a_minus=1.0, alpha=alpha, conv=conv, factors=factors)
    return traces


def first_spike_stdp_accumulate_(
    acc: Tensor,
    pre_time: Tensor,
    post_time: Tensor,
    post_weight: Tensor,
    *,
    a_plus: float | Tensor,
    a_minus: float | Tensor,
    alpha: float,
    conv: ConvGeometry | None = None,
    factors: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Accumulate the first-spike STDP of Mozafari et al. 2019 (SpykeTorch ``functional.stdp``).

    For every selected post neuron (``post_weight != 0``; the k-WTA winners) and every synapse of
    its receptive field: potentiation if the pre neuron first spiked no later than the post
    neuron, depression otherwise (also when the pre neuron never spiked, or the synapse sees
    zero padding)::

        causal[j, i] = sum_{b, pos} c[b] post_weight[b, j] [pre_time[b, i] <= post_time[b, j]]
        count[j]     = sum_{b, pos} c[b] post_weight[b, j]
        dw = a_plus f_plus(w) causal(c = a_plus) - a_minus f_minus(w) (count - causal)(c = a_minus)

    (per-sample amplitudes ``a[b]`` apply along the batch axis). Only the selected neurons'
    weight rows are touched: their receptive fields are gathered
    (:func:`~plasticity_plugins.kernels.synapse.receptive_fields`), compared with their spike
    times and added with one ``index_add_``, so the cost grows with the number of winners times
    the kernel size, not with the layer.

    Args:
        acc: accumulator with the weight's shape.
        pre_time: ``[B, *in]`` first pre spike times (``inf``: never).
        post_time: ``[B, *out]`` first post spike times of the selected neurons (synapse output
            layout; any value where ``post_weight == 0``).
        post_weight: ``[B, *out]`` 1 for a selected neuron (pooling routes fractional weights),
            0 elsewhere.
        a_plus: causal amplitude, a float or ``[B]`` per sample.
        a_minus: anti-causal amplitude (positive for depression), a float or ``[B]``.
        alpha: scale of ``dw`` in ``acc``.
        conv: convolution geometry; None for Linear.
        factors: ``(f_plus, f_minus)`` from :func:`weight_factors`; None for additive.

    Returns:
        ``acc``.

    Example:
        >>> acc = torch.zeros(1, 2)
        >>> _ = first_spike_stdp_accumulate_(acc, torch.tensor([[0.0, 5.0]]),
        ...     torch.tensor([[3.0]]), torch.ones(1, 1), a_plus=0.004, a_minus=0.003, alpha=1.0)
        >>> acc  # pre 0 spiked first: LTP; pre 1 spiked after the post neuron: LTD
        tensor([[ 0.0040, -0.0030]])
    """
    selected = post_weight.nonzero()
    if selected.numel() == 0:
        return acc
    dtype = acc.dtype
    batch = post_weight.shape[0]
    at = tuple(selected.T)
    sample, feature = selected[:, 0], selected[:, 1]
    row_shape = (-1, *([1] * (acc.dim() - 1)))
    weight = post_weight[at].to(dtype)
    coef_plus = torch.as_tensor(a_plus, dtype=dtype, device=acc.device).expand(batch)[sample]
    coef_minus = torch.as_tensor(a_minus, dtype=dtype, device=acc.device).expand(batch)[sample]
    fields = receptive_fields(pre_time, selected, tuple(acc.shape), conv, pad_value=math.inf)
    causal = fields <= post_time[at].view(row_shape)
    plus = (coef_plus * weight).view(row_shape)
    minus = (coef_minus * weight).view(row_shape)
    if factors is not None:
        plus = plus * factors[0][feature]
        minus = minus * factors[1][feature]
    return acc.index_add_(0, feature, torch.where(causal, plus, -minus), alpha=alpha)
