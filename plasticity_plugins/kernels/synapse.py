"""Synapse-shaped linear algebra shared by the rules: outer products and input VJPs.

A synapse is an ``nn.Linear`` (weight ``[out, in]``) or an ``nn.Conv1d`` / ``nn.Conv2d``. Rules
express weight updates as sums of outer products of a post-synaptic factor (synapse output
layout) and a pre-synaptic factor (synapse input layout), summed over samples, time steps and
convolution positions: one GEMM (Linear) or one weight-gradient convolution (Conv), never a
``[B, out, in]`` tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.grad
from torch import Tensor


@dataclass(frozen=True)
class ConvGeometry:
    """Geometry of a convolution synapse (what ``nn.Conv1d`` / ``nn.Conv2d`` hold).

    Attributes:
        stride, padding, dilation: per spatial dimension, explicit integers.
        groups: number of groups.
    """

    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1


def outer_accumulate_(
    acc: Tensor, post: Tensor, pre: Tensor, alpha: float, conv: ConvGeometry | None = None
) -> Tensor:
    """``acc += alpha * sum_n post[n] (x) pre[n]``, in place, as one GEMM / weight convolution.

    Args:
        acc: ``[out, in]`` (Linear) or the convolution weight's shape.
        post: ``[N, out]`` or ``[N, out, *spatial_out]`` post-synaptic factors.
        pre: ``[N, in]`` or ``[N, in, *spatial_in]`` pre-synaptic factors.
        alpha: scale.
        conv: geometry for a convolution synapse; None for Linear.

    Returns:
        ``acc``.

    Example:
        >>> acc = torch.zeros(2, 3)
        >>> outer_accumulate_(acc, torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 2.0, 3.0]]), 0.5)
        tensor([[0.5000, 1.0000, 1.5000],
                [0.0000, 0.0000, 0.0000]])
    """
    if conv is None:
        return acc.addmm_(
            post.reshape(post.shape[0], -1).T, pre.reshape(pre.shape[0], -1), alpha=alpha
        )
    weight_gradient = {1: torch.nn.grad.conv1d_weight, 2: torch.nn.grad.conv2d_weight}[
        len(conv.stride)
    ]
    # the post factors stay as they are: converting large post-synaptic maps costs more than
    # it saves, unless the caller converts them once for several uses (the one-step STDP kernel)
    pre = gradient_layout(pre, conv)
    delta = weight_gradient(
        pre, acc.shape, post, conv.stride, conv.padding, conv.dilation, conv.groups
    )
    return acc.add_(delta, alpha=alpha)


def channels_last(x: Tensor) -> Tensor:
    """``x`` (``[N, C, H, W]``) in channels-last memory order; itself when it already is."""
    return x.contiguous(memory_format=torch.channels_last)


def gradient_layout(x: Tensor, conv: ConvGeometry | None) -> Tensor:
    """A factor of :func:`outer_accumulate_` in the memory order its product is fastest with.

    Channels-last for a 2-D convolution: oneDNN's weight gradient is about twice as fast with
    the input channels-last, and about twice as fast again when the post factor is too (though
    converting a large post-synaptic map costs about as much as that saves, so it pays only for
    a map converted once and used more than once). Anything else, and a factor already in that
    order, is returned as it is.
    """
    if conv is not None and len(conv.stride) == 2:
        return channels_last(x)
    return x


def stacked_rows(
    parts: list[Tensor], scales: list[float], channels_last_2d: bool = False
) -> Tensor:
    """``cat([p.reshape(-1, *p.shape[2:]) * s for p, s in zip(parts, scales)])`` in one pass.

    The rows (``[T, B, ...]`` flattened to ``[T * B, ...]``) are written straight into their
    place, in channels-last memory order for ``[N, C, H, W]`` rows when ``channels_last_2d``.
    """
    rows = [p.reshape(-1, *p.shape[2:]) for p in parts]
    total = sum(r.shape[0] for r in rows)
    first = rows[0]
    layout = torch.contiguous_format
    if channels_last_2d and first.dim() == 4:
        layout = torch.channels_last
    out = torch.empty(
        (total, *first.shape[1:]), dtype=first.dtype, device=first.device, memory_format=layout
    )
    start = 0
    for r, scale in zip(rows, scales, strict=True):
        end = start + r.shape[0]
        if scale == 1.0:
            out[start:end].copy_(r)
        else:
            torch.mul(r, scale, out=out[start:end])
        start = end
    return out


def input_vjp(
    grad_output: Tensor,
    weight: Tensor,
    input_shape: tuple[int, ...],
    conv: ConvGeometry | None = None,
) -> Tensor:
    """``grad_output`` pulled back through the synapse to its input: ``W^T g`` / transposed conv.

    Args:
        grad_output: ``[N, out]`` or ``[N, out, *spatial_out]``.
        weight: the synapse weight.
        input_shape: ``[N, in]`` or ``[N, in, *spatial_in]``.
        conv: geometry for a convolution synapse; None for Linear.

    Example:
        >>> input_vjp(torch.ones(1, 2), torch.tensor([[1.0, 2.0], [3.0, 4.0]]), (1, 2))
        tensor([[4., 6.]])
    """
    if conv is None:
        return grad_output.reshape(grad_output.shape[0], -1) @ weight
    input_gradient = {1: torch.nn.grad.conv1d_input, 2: torch.nn.grad.conv2d_input}[
        len(conv.stride)
    ]
    return input_gradient(
        input_shape, weight, grad_output, conv.stride, conv.padding, conv.dilation, conv.groups
    )


def outer_per_sample_accumulate_(
    acc: Tensor, post: Tensor, pre: Tensor, alpha: float, conv: ConvGeometry | None = None
) -> Tensor:
    """``acc[b] += alpha * sum_n post[n, b] (x) pre[n, b]``: outer products kept per sample.

    For state that is inherently per sample (an eligibility trace read later by a per-sample
    reward). Linear: one batched GEMM over ``b``; Conv: one weight-gradient convolution with the
    samples as extra groups (``groups * B``).

    Args:
        acc: ``[B, *weight.shape]``.
        post: ``[N, B, out]`` or ``[N, B, out, *spatial_out]``.
        pre: ``[N, B, in]`` or ``[N, B, in, *spatial_in]``.
        alpha: scale.
        conv: geometry for a convolution synapse; None for Linear.

    Returns:
        ``acc``.

    Example:
        >>> acc = torch.zeros(2, 1, 2)
        >>> post = torch.tensor([[[1.0], [2.0]]])
        >>> pre = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> outer_per_sample_accumulate_(acc, post, pre, 1.0)
        tensor([[[1., 0.]],
        <BLANKLINE>
                [[0., 2.]]])
    """
    steps, batch = post.shape[:2]
    if conv is None:
        return acc.baddbmm_(post.permute(1, 2, 0), pre.transpose(0, 1), alpha=alpha)
    weight_gradient = {1: torch.nn.grad.conv1d_weight, 2: torch.nn.grad.conv2d_weight}[
        len(conv.stride)
    ]
    out_channels = acc.shape[1]
    delta = weight_gradient(
        pre.reshape(steps, -1, *pre.shape[3:]),
        (batch * out_channels, *acc.shape[2:]),
        post.reshape(steps, -1, *post.shape[3:]),
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups * batch,
    )
    return acc.add_(delta.view(acc.shape), alpha=alpha)


def receptive_fields(
    pre: Tensor,
    outputs: Tensor,
    weight_shape: tuple[int, ...],
    conv: ConvGeometry | None = None,
    pad_value: float = 0.0,
) -> Tensor:
    """The pre-synaptic values each selected output unit sees, in its weight row's layout.

    Args:
        pre: ``[B, in]`` (Linear) or ``[B, C_in, *spatial_in]`` (Conv).
        outputs: ``[n, 2 + d]`` long, rows ``(sample, out_feature, *position)`` (``d = 0`` for
            Linear), e.g. ``post.nonzero()`` of a tensor in the synapse's output layout.
        weight_shape: the synapse weight's shape ``[out, in]`` / ``[out, C_in / groups, *k]``.
        conv: convolution geometry; None for Linear.
        pad_value: what a position in the zero padding reads as.

    Returns:
        ``[n, *weight_shape[1:]]``: row ``r`` holds the inputs that weight ``out_feature`` of
        row ``r`` multiplies at that sample and position, so that ``sum_r rows[r] * post[r]``
        added to the weight rows ``out_feature`` is :func:`outer_accumulate_` restricted to the
        selected units.

    Example:
        >>> pre = torch.arange(5.0).view(1, 1, 5)  # one sample, one channel, length 5
        >>> conv = ConvGeometry(stride=(1,), padding=(1,), dilation=(1,))
        >>> receptive_fields(pre, torch.tensor([[0, 0, 0], [0, 1, 4]]), (2, 1, 3), conv, -1.0)
        tensor([[[-1.,  0.,  1.]],
        <BLANKLINE>
                [[ 3.,  4., -1.]]])
    """
    sample, feature = outputs[:, 0], outputs[:, 1]
    if conv is None:
        return pre.reshape(pre.shape[0], -1)[sample]
    dims = len(conv.stride)
    n = outputs.shape[0]
    in_per_group = weight_shape[1]
    out_per_group = weight_shape[0] // conv.groups
    pad = [p for p in reversed(conv.padding) for _ in range(2)]
    padded = torch.nn.functional.pad(pre, pad, value=pad_value) if any(pad) else pre
    view = (n, *([1] * (dims + 1)))
    index: list[Tensor] = [sample.view(view)]
    channel = (feature // out_per_group).unsqueeze(1) * in_per_group
    channel = channel + torch.arange(in_per_group, device=pre.device)
    index.append(channel.view(n, in_per_group, *([1] * dims)))
    for axis in range(dims):
        size = weight_shape[2 + axis]
        offsets = torch.arange(size, device=pre.device) * conv.dilation[axis]
        coordinate = outputs[:, 2 + axis].unsqueeze(1) * conv.stride[axis] + offsets
        shape = [n, 1] + [1] * dims
        shape[2 + axis] = size
        index.append(coordinate.view(shape))
    return padded[tuple(index)]
