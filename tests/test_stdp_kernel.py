"""The pair-STDP kernel against an explicit per-synapse loop and the SPECS pair timings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stdp_reference import conv2d_loop_reference, linear_loop_reference

from plasticity_plugins.kernels.stdp import pair_stdp_accumulate_
from plasticity_plugins.kernels.synapse import ConvGeometry
from plasticity_plugins.kernels.traces import decay_factor


@pytest.mark.parametrize("kind", ["all_to_all", "nearest"])
def test_linear_matches_loop(kind):
    rng = np.random.default_rng(1)
    pre = (rng.random((12, 3, 4)) < 0.3).astype(np.float64)
    post = (rng.random((12, 3, 5)) < 0.3).astype(np.float64)
    d_pre, d_post = decay_factor(4.0), decay_factor(6.0)
    acc = torch.zeros(5, 4, dtype=torch.float64)
    pair_stdp_accumulate_(
        acc,
        torch.from_numpy(pre),
        torch.from_numpy(post),
        torch.zeros(3, 4, dtype=torch.float64),
        torch.zeros(3, 5, dtype=torch.float64),
        a_plus=0.7,
        a_minus=0.4,
        pre_decay=d_pre,
        post_decay=d_post,
        alpha=1 / 3,
        kind=kind,
    )
    np.testing.assert_allclose(
        acc.numpy(),
        linear_loop_reference(pre, post, 0.7, 0.4, d_pre, d_post, kind),
        rtol=1e-12,
        atol=1e-14,
    )


@pytest.mark.parametrize("kind", ["all_to_all", "nearest"])
def test_stepwise_calls_equal_one_sequence_call(kind):
    """One-step calls (a single-step network's path: its own two-GEMM kernel) against one call
    over the whole sequence and against the explicit loop."""
    torch.manual_seed(0)
    pre = (torch.rand(9, 2, 6, dtype=torch.float64) < 0.4).double()
    post = (torch.rand(9, 2, 3, dtype=torch.float64) < 0.4).double()
    kwargs = dict(a_plus=1.0, a_minus=0.5, pre_decay=0.8, post_decay=0.7, alpha=1.0, kind=kind)
    whole = torch.zeros(3, 6, dtype=torch.float64)
    pair_stdp_accumulate_(
        whole, pre, post, torch.zeros(2, 6).double(), torch.zeros(2, 3).double(), **kwargs
    )
    stepped = torch.zeros(3, 6, dtype=torch.float64)
    traces = (torch.zeros(2, 6).double(), torch.zeros(2, 3).double())
    for t in range(9):
        traces = pair_stdp_accumulate_(stepped, pre[t : t + 1], post[t : t + 1], *traces, **kwargs)
    torch.testing.assert_close(stepped, whole, rtol=1e-12, atol=1e-12)
    reference = linear_loop_reference(pre.numpy(), post.numpy(), 1.0, 0.5, 0.8, 0.7, kind)
    np.testing.assert_allclose(stepped.numpy(), 2 * reference, rtol=1e-12, atol=1e-14)


def _single_pair(t_pre, t_post, steps=11, tau_pre=5.0, tau_post=8.0):
    pre = torch.zeros(steps, 1, 1, dtype=torch.float64)
    post = torch.zeros(steps, 1, 1, dtype=torch.float64)
    pre[t_pre] = 1
    post[t_post] = 1
    acc = torch.zeros(1, 1, dtype=torch.float64)
    pair_stdp_accumulate_(
        acc,
        pre,
        post,
        torch.zeros(1, 1).double(),
        torch.zeros(1, 1).double(),
        a_plus=0.01,
        a_minus=0.02,
        pre_decay=decay_factor(tau_pre),
        post_decay=decay_factor(tau_post),
        alpha=1.0,
    )
    return acc.item()


def test_pair_timing_convention():
    assert _single_pair(0, 10) == pytest.approx(0.01 * math.exp(-10 / 5.0), rel=1e-12)
    assert _single_pair(10, 0) == pytest.approx(-0.02 * math.exp(-10 / 8.0), rel=1e-12)
    assert _single_pair(4, 4) == pytest.approx(0.01, rel=1e-12)


@pytest.mark.parametrize(
    "stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2)]
)
def test_conv2d_matches_loop(stride, padding, dilation, groups):
    rng = np.random.default_rng(2)
    conv = torch.nn.Conv2d(
        4, 4, 3, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    pre = (rng.random((3, 2, 4, 7, 7)) < 0.3).astype(np.float64)
    out_hw = F.conv2d(
        torch.zeros(1, 4, 7, 7),
        conv.weight.detach(),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    ).shape[-2:]
    post = (rng.random((3, 2, 4, *out_hw)) < 0.3).astype(np.float64)
    geometry = ConvGeometry((stride,) * 2, (padding,) * 2, (dilation,) * 2, groups)
    acc = torch.zeros(conv.weight.shape, dtype=torch.float64)
    pair_stdp_accumulate_(
        acc,
        torch.from_numpy(pre),
        torch.from_numpy(post),
        torch.zeros(pre.shape[1:], dtype=torch.float64),
        torch.zeros(post.shape[1:], dtype=torch.float64),
        a_plus=0.3,
        a_minus=0.2,
        pre_decay=0.6,
        post_decay=0.5,
        alpha=0.5,
        conv=geometry,
    )
    expected = conv2d_loop_reference(
        pre, post, tuple(conv.weight.shape), geometry, 0.3, 0.2, 0.6, 0.5
    )
    np.testing.assert_allclose(acc.numpy(), expected, rtol=1e-10, atol=1e-12)


def _conv2d_reference_any_kind(pre, post, conv, kind, a_plus, a_minus, d_pre, d_post):
    """dw of a Conv2d (summed over the batch) through the per-synapse Linear loop.

    At each output position a convolution is a Linear synapse (one per group) from its
    receptive-field patch to the output channels, so the positions join the samples; traces
    commute with the patch gather (each patch entry is one input pixel's trace, 0 on padding).
    """
    steps, batch = pre.shape[:2]
    weight_shape = conv.weight.shape
    out_per_group = weight_shape[0] // conv.groups
    in_per_group = weight_shape[1]
    geometry = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
    flat = torch.from_numpy(pre).flatten(0, 1)
    dw = np.zeros((weight_shape[0], in_per_group * weight_shape[2] * weight_shape[3]))
    for g in range(conv.groups):
        patches = F.unfold(
            flat[:, g * in_per_group : (g + 1) * in_per_group], conv.kernel_size, **geometry
        )
        positions = patches.shape[-1]
        pre_rows = patches.reshape(steps, batch, -1, positions).permute(0, 1, 3, 2)
        outs = slice(g * out_per_group, (g + 1) * out_per_group)
        post_rows = torch.from_numpy(post[:, :, outs]).flatten(3).permute(0, 1, 3, 2)
        dw[outs] = (
            batch
            * positions
            * linear_loop_reference(
                pre_rows.reshape(steps, batch * positions, -1).numpy(),
                post_rows.reshape(steps, batch * positions, -1).numpy(),
                a_plus,
                a_minus,
                d_pre,
                d_post,
                kind,
            )
        )
    return dw.reshape(weight_shape)


@pytest.mark.parametrize("kind", ["all_to_all", "nearest"])
@pytest.mark.parametrize(
    "stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2)]
)
def test_conv2d_one_step_calls_match_loop(kind, stride, padding, dilation, groups):
    """T = 1 calls on a Conv2d (a single-step network's path: the one-step kernel, with the
    channels-last post trace carried from call to call) against the per-synapse loop and
    against one call over the whole sequence."""
    rng = np.random.default_rng(3)
    conv = torch.nn.Conv2d(
        4, 4, 3, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    pre = (rng.random((5, 2, 4, 6, 6)) < 0.3).astype(np.float64)
    out_hw = conv(torch.zeros(1, 4, 6, 6)).shape[-2:]
    post = (rng.random((5, 2, 4, *out_hw)) < 0.3).astype(np.float64)
    geometry = ConvGeometry(conv.stride, conv.padding, conv.dilation, groups)
    kwargs = dict(
        a_plus=0.3, a_minus=0.2, pre_decay=0.6, post_decay=0.5, alpha=0.5, kind=kind, conv=geometry
    )
    stepped = torch.zeros(conv.weight.shape, dtype=torch.float64)
    traces = (
        torch.zeros(pre.shape[1:], dtype=torch.float64),
        torch.zeros(post.shape[1:], dtype=torch.float64),
    )
    for t in range(pre.shape[0]):
        traces = pair_stdp_accumulate_(
            stepped,
            torch.from_numpy(pre[t : t + 1]),
            torch.from_numpy(post[t : t + 1]),
            *traces,
            **kwargs,
        )
    whole = torch.zeros_like(stepped)
    pair_stdp_accumulate_(
        whole,
        torch.from_numpy(pre),
        torch.from_numpy(post),
        torch.zeros(pre.shape[1:], dtype=torch.float64),
        torch.zeros(post.shape[1:], dtype=torch.float64),
        **kwargs,
    )
    torch.testing.assert_close(stepped, whole, rtol=1e-12, atol=1e-12)
    expected = _conv2d_reference_any_kind(pre, post, conv, kind, 0.3, 0.2, 0.6, 0.5)
    np.testing.assert_allclose(stepped.numpy(), 0.5 * expected, rtol=1e-10, atol=1e-12)
