"""Spike-timing-dependent plasticity windows as batched GEMMs.

Pair STDP with exponential windows, in this package's sign and timing convention (SPECS.md,
"Sign and timing convention"): over one sequence of ``T`` steps,

    x_pre[t]  = d_pre  * x_pre[t-1]  + s_pre[t]                  (includes this step's spike)
    x_post[t] = d_post * x_post[t-1] + s_post[t]
    dw        = sum_t  a_plus  * s_post[t] (x) x_pre[t]
                     - a_minus * (d_post * x_post[t-1]) (x) s_pre[t]

with ``d = exp(-1 / tau)``. A pre spike at ``t0`` and a post spike at ``t0 + d`` give
``a_plus * exp(-d / tau_pre)``; the reverse order gives ``-a_minus * exp(-d / tau_post)``; a
same-step pair is potentiation only (the depression term sees the post trace BEFORE this
step's post spike).

The outer products are summed over time, batch and (for convolutions) positions with one GEMM
(Linear) or one weight-gradient convolution (Conv1d / Conv2d) per call: the causal and the
anti-causal terms are stacked along the batch axis, so no ``[B, out, in]`` tensor is formed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .synapse import ConvGeometry, outer_accumulate_
from .traces import TraceKind, trace_sequence


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
    steps, batch = pre.shape[:2]
    pre_traces = trace_sequence(pre, pre_trace, pre_decay, kind)
    post_traces = trace_sequence(post, post_trace, post_decay, kind)
    post_before = torch.cat([post_trace.unsqueeze(0), post_traces[:-1]]).mul_(post_decay)
    rows = steps * batch
    post_rows = torch.cat(
        [
            (post * a_plus).reshape(rows, *post.shape[2:]),
            (post_before * -a_minus).reshape(rows, *post.shape[2:]),
        ]
    )
    pre_rows = torch.cat(
        [pre_traces.reshape(rows, *pre.shape[2:]), pre.reshape(rows, *pre.shape[2:])]
    )
    outer_accumulate_(acc, post_rows, pre_rows, alpha, conv)
    return pre_traces[-1], post_traces[-1]
