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
