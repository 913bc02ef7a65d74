"""The pair-STDP kernel against an explicit per-synapse loop and the SPECS pair timings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plasticity_plugins.kernels.stdp import ConvGeometry, pair_stdp_accumulate_
from plasticity_plugins.kernels.traces import decay_factor


def _loop_reference(pre, post, a_plus, a_minus, d_pre, d_post, kind):
    """dw[o, i] by walking every synapse, every sample and every step (Linear)."""
    steps, batch, n_in = pre.shape
    n_out = post.shape[2]
    dw = np.zeros((n_out, n_in))
    for b in range(batch):
        for o in range(n_out):
            for i in range(n_in):
                x_pre = x_post = 0.0
                for t in range(steps):
                    post_before = x_post * d_post
                    if kind == "all_to_all":
                        x_pre = x_pre * d_pre + pre[t, b, i]
                        x_post = x_post * d_post + post[t, b, o]
                    else:
                        x_pre = pre[t, b, i] if pre[t, b, i] else x_pre * d_pre
                        x_post = post[t, b, o] if post[t, b, o] else x_post * d_post
                    dw[o, i] += (
                        a_plus * post[t, b, o] * x_pre - a_minus * post_before * pre[t, b, i]
                    )
    return dw / batch


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
        _loop_reference(pre, post, 0.7, 0.4, d_pre, d_post, kind),
        rtol=1e-12,
        atol=1e-14,
    )


def test_stepwise_calls_equal_one_sequence_call():
    torch.manual_seed(0)
    pre = (torch.rand(9, 2, 6, dtype=torch.float64) < 0.4).double()
    post = (torch.rand(9, 2, 3, dtype=torch.float64) < 0.4).double()
    kwargs = dict(a_plus=1.0, a_minus=0.5, pre_decay=0.8, post_decay=0.7, alpha=1.0)
    whole = torch.zeros(3, 6, dtype=torch.float64)
    pair_stdp_accumulate_(
        whole, pre, post, torch.zeros(2, 6).double(), torch.zeros(2, 3).double(), **kwargs
    )
    stepped = torch.zeros(3, 6, dtype=torch.float64)
    traces = (torch.zeros(2, 6).double(), torch.zeros(2, 3).double())
    for t in range(9):
        traces = pair_stdp_accumulate_(stepped, pre[t : t + 1], post[t : t + 1], *traces, **kwargs)
    torch.testing.assert_close(stepped, whole, rtol=1e-12, atol=1e-12)


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


def _conv_loop_reference(pre, post, weight_shape, geometry, a_plus, a_minus, d_pre, d_post):
    """dw of a Conv2d by walking every weight, sample, step and output position."""
    steps, batch = pre.shape[:2]
    (sy, sx), (py, px), (dy, dx), groups = (
        geometry.stride,
        geometry.padding,
        geometry.dilation,
        geometry.groups,
    )
    padded = np.pad(pre, ((0, 0), (0, 0), (0, 0), (py, py), (px, px)))
    pre_tr = np.zeros_like(padded)
    tr = np.zeros_like(padded[0])
    for t in range(steps):
        tr = tr * d_pre + padded[t]
        pre_tr[t] = tr
    post_tr = np.zeros_like(post[0])
    dw = np.zeros(weight_shape)
    out_c, in_per_group, kh, kw = weight_shape
    out_per_group = out_c // groups
    for t in range(steps):
        post_before = post_tr * d_post
        post_tr = post_tr * d_post + post[t]
        for b in range(batch):
            for o in range(out_c):
                g = o // out_per_group
                for c in range(in_per_group):
                    ci = g * in_per_group + c
                    for ky in range(kh):
                        for kx in range(kw):
                            for y in range(post.shape[3]):
                                for x in range(post.shape[4]):
                                    iy, ix = y * sy + ky * dy, x * sx + kx * dx
                                    dw[o, c, ky, kx] += (
                                        a_plus * post[t, b, o, y, x] * pre_tr[t, b, ci, iy, ix]
                                        - a_minus
                                        * post_before[b, o, y, x]
                                        * padded[t, b, ci, iy, ix]
                                    )
    return dw / batch


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
    expected = _conv_loop_reference(
        pre, post, tuple(conv.weight.shape), geometry, 0.3, 0.2, 0.6, 0.5
    )
    np.testing.assert_allclose(acc.numpy(), expected, rtol=1e-10, atol=1e-12)
