"""The pair-STDP kernel against an explicit per-synapse loop and the SPECS pair timings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stdp_reference import conv2d_loop_reference, linear_loop_reference

from plasticity_plugins.kernels import stdp as stdp_kernels
from plasticity_plugins.kernels.stdp import (
    TripletTraces,
    accumulate_terms_,
    accumulate_terms_per_sample_,
    pair_stdp_accumulate_,
    pair_stdp_terms,
    triplet_stdp_accumulate_,
    weight_factors,
)
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


# (in channels, out channels, kernel, padding, input height, input width): stride 1, dilation 1,
# one group, the C++ one-step kernel's domain; kernels up to 8 wide, any height (more than eight
# kernel rows are summed in several blocks), padding up to kernel - 1
COMPILED_CONV2D_CASES = [
    (2, 32, (5, 5), (2, 2), 12, 12),
    (3, 5, (3, 3), (1, 1), 7, 9),
    (1, 4, (1, 1), (0, 0), 5, 6),
    (2, 3, (3, 2), (0, 1), 8, 5),
    (4, 6, (9, 8), (4, 7), 10, 11),
    (3, 2, (2, 7), (1, 0), 6, 13),
    (1, 2, (5, 5), (1, 1), 3, 3),  # a map smaller than the kernel: one output position
]


def _output_size(spatial, padding, kernel):
    """A stride-1, dilation-1 convolution's output size."""
    return tuple(n + 2 * p - k + 1 for n, p, k in zip(spatial, padding, kernel, strict=True))


def _graded_spikes(shape, rate, dtype, generator):
    """Spikes with random nonzero values (the kernel multiplies by them; 0 / 1 is a special
    case)."""
    fired = torch.rand(shape, generator=generator) < rate
    return (fired * (0.5 + torch.rand(shape, generator=generator))).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", COMPILED_CONV2D_CASES)
def test_compiled_conv2d_step_matches_weight_gradient_convolutions(cpp_kernels, case, dtype):
    """The C++ op ``pair_stdp_conv2d_step``: its causal and anti-causal sums against torch's
    weight-gradient convolution (float64, on the same values), its post trace against
    ``decay * trace + post`` and the nearest-spike rule."""
    in_channels, out_channels, kernel, padding, height, width = case
    g = torch.Generator().manual_seed(sum(case[:2]))
    batch = 3
    out_hw = _output_size((height, width), padding, kernel)
    pre = _graded_spikes((batch, in_channels, height, width), 0.3, dtype, g)
    pre_trace = torch.rand(pre.shape, generator=g).to(dtype)
    post = _graded_spikes((batch, out_channels, *out_hw), 0.2, dtype, g)
    post_trace = torch.rand(post.shape, generator=g).to(dtype)
    weight_shape = (out_channels, in_channels, *kernel)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=0)
    for nearest in (False, True):
        causal, anti, trace = torch.ops.plasticity_plugins_cpu.pair_stdp_conv2d_step(
            pre, pre_trace, post, post_trace, *kernel, *padding, 0.9, nearest
        )
        expected_causal = torch.nn.grad.conv2d_weight(
            pre_trace.double(), weight_shape, post.double(), padding=padding
        )
        expected_anti = torch.nn.grad.conv2d_weight(
            pre.double(), weight_shape, post_trace.double(), padding=padding
        )
        torch.testing.assert_close(causal.double(), expected_causal, **tolerance)
        torch.testing.assert_close(anti.double(), expected_anti, **tolerance)
        decayed = 0.9 * post_trace.double()
        expected_trace = torch.where(post != 0, post, decayed) if nearest else decayed + post
        torch.testing.assert_close(trace.double(), expected_trace, **tolerance)
    # the trace advanced by other spikes (triplet STDP), and not computed at all
    other = _graded_spikes(post.shape, 0.5, dtype, g)
    *sums, trace = torch.ops.plasticity_plugins_cpu.pair_stdp_conv2d_step(
        pre, pre_trace, post, post_trace, *kernel, *padding, 0.9, False, other
    )
    torch.testing.assert_close(trace.double(), 0.9 * post_trace.double() + other, **tolerance)
    *same_sums, nothing = torch.ops.plasticity_plugins_cpu.pair_stdp_conv2d_step(
        pre, pre_trace, post, post_trace, *kernel, *padding, 0.9, False, None, False
    )
    assert nothing.numel() == 0
    for ours, theirs in zip(sums, same_sums, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def _assert_compiled_and_torch_paths_agree(
    run, monkeypatch, *applies_args, applies=stdp_kernels._compiled_conv_step_applies
) -> None:
    """``run()`` through a C++ kernel (``applies(*applies_args)`` must hold) and through the
    torch ops (``PLASTICITY_PLUGINS_CPU_EXT=0``): the same tensors."""
    assert applies(*applies_args)
    compiled = run()
    monkeypatch.setenv("PLASTICITY_PLUGINS_CPU_EXT", "0")
    assert not applies(*applies_args)
    reference = run()
    for ours, theirs in zip(compiled, reference, strict=True):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


_PATH_AMPLITUDES = dict(a_plus=0.3, a_minus=0.2, pre_decay=0.6, post_decay=0.5, alpha=0.5)


def _stepwise_then_whole(pre, post, weight, kwargs):
    """A run for :func:`_assert_compiled_and_torch_paths_agree`: pair STDP over ``pre`` /
    ``post`` in one-step calls, then in one call; returns both updates and both final traces."""

    def run() -> tuple[torch.Tensor, ...]:
        acc = torch.zeros_like(weight)
        traces = (torch.zeros_like(pre[0]), torch.zeros_like(post[0]))
        for pre_t, post_t in zip(pre.split(1), post.split(1), strict=True):
            traces = pair_stdp_accumulate_(acc, pre_t, post_t, *traces, **kwargs)
        whole = torch.zeros_like(acc)
        whole_traces = pair_stdp_accumulate_(
            whole, pre, post, torch.zeros_like(pre[0]), torch.zeros_like(post[0]), **kwargs
        )
        return acc, *traces, whole, *whole_traces

    return run


# (in channels, out channels, kernel, padding, input size): Conv2d and Conv1d layers in the
# kernel's domain
PATH_CASES = [
    *[(c_in, c_out, k, p, (h, w)) for c_in, c_out, k, p, h, w in COMPILED_CONV2D_CASES[:3]],
    (3, 4, (3,), (1,), (13,)),
    (3, 4, (8,), (7,), (13,)),
    (3, 4, (1,), (0,), (13,)),
]


@pytest.mark.parametrize("dependence", ["additive", "soft", "mozafari"])
@pytest.mark.parametrize("kind", ["all_to_all", "nearest"])
@pytest.mark.parametrize("case", PATH_CASES)
def test_pair_conv_compiled_and_torch_paths_agree(cpp_kernels, monkeypatch, case, kind, dependence):
    """One-step calls and a whole-sequence call on a Conv2d / Conv1d (a Conv2d of height 1)
    through the C++ kernel (traces in NCHW order) and through the torch ops (the one-step path's
    two weight-gradient convolutions with channels-last traces, the sequence path's ``[T, B]``
    terms), with each weight dependence: the same updates and traces."""
    in_channels, out_channels, kernel, padding, spatial = case
    g = torch.Generator().manual_seed(11)
    out_spatial = _output_size(spatial, padding, kernel)
    pre = _graded_spikes((6, 2, in_channels, *spatial), 0.3, torch.float64, g)
    post = _graded_spikes((6, 2, out_channels, *out_spatial), 0.3, torch.float64, g)
    ones = (1,) * len(kernel)
    geometry = ConvGeometry(ones, padding, ones, 1)
    weight = torch.rand(out_channels, in_channels, *kernel, generator=g).double()
    kwargs = dict(
        _PATH_AMPLITUDES,
        kind=kind,
        conv=geometry,
        factors=weight_factors(weight, dependence, 0.0, 1.0, 0.7),
    )

    run = _stepwise_then_whole(pre, post, weight, kwargs)
    _assert_compiled_and_torch_paths_agree(
        run, monkeypatch, pre[:1], post[:1], post[0], weight, geometry
    )


def test_compiled_conv2d_step_is_the_same_on_several_threads(cpp_kernels):
    """The C++ kernel splits the batch across torch's intra-op threads, each with its own sums."""
    g = torch.Generator().manual_seed(2)
    pre = _graded_spikes((7, 2, 9, 9), 0.3, torch.float64, g)
    post = _graded_spikes((7, 5, 9, 9), 0.3, torch.float64, g)
    args = (pre, torch.rand(pre.shape, generator=g).double(), post)
    args += (torch.rand(post.shape, generator=g).double(), 3, 3, 1, 1, 0.8, False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.plasticity_plugins_cpu.pair_stdp_conv2d_step(*args)
        torch.set_num_threads(3)
        several = torch.ops.plasticity_plugins_cpu.pair_stdp_conv2d_step(*args)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, several, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("steps", [0, 1, 5])
def test_compiled_linear_sequence_is_its_steps_one_by_one(cpp_kernels, steps):
    """A ``[T, B, n]`` call of the op is its T one-step calls in turn, bit for bit (the same
    per-step computation, dense and sparse steps mixed), and leaves its input traces alone."""
    g = torch.Generator().manual_seed(8 + steps)
    pre = _graded_spikes((steps, 3, 70), 0.1, torch.float32, g)
    rates = torch.tensor([0.05, 0.5])[torch.arange(steps) % 2]  # sparse and dense steps
    post = (torch.rand(steps, 3, 66, generator=g) < rates[:, None, None]).float()
    pre_trace, post_trace = torch.rand(3, 70, generator=g), torch.rand(3, 66, generator=g)
    start = torch.randn(66, 70, generator=g)
    kept = (pre_trace.clone(), post_trace.clone())
    whole = start.clone()
    traces = _linear_op(whole, pre, pre_trace, post, post_trace, 0.5, -0.25)
    stepwise, step_traces = start.clone(), (pre_trace, post_trace)
    for pre_t, post_t in zip(pre, post, strict=True):
        step_traces = _linear_op(
            stepwise, pre_t, step_traces[0], post_t, step_traces[1], 0.5, -0.25
        )
    assert torch.equal(whole, stepwise)
    assert torch.equal(traces[0], step_traces[0]) and torch.equal(traces[1], step_traces[1])
    assert torch.equal(pre_trace, kept[0]) and torch.equal(post_trace, kept[1])
    assert traces[0].data_ptr() != pre_trace.data_ptr()


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(kernel=(3, 9), padding=(1, 1)), "kernel width must be 1 to 8"),
        (dict(padding=(3, 1)), "padding must be below the kernel size"),
        (dict(post_dtype=torch.float64), "mixed dtypes"),
        (dict(post_size=8), "does not follow from input size"),
    ],
)
def test_compiled_conv2d_step_rejects_what_it_cannot_compute(cpp_kernels, change, message):
    """The op's own checks (the rule sends such cases to the torch path)."""
    kernel, padding = change.get("kernel", (3, 3)), change.get("padding", (1, 1))
    size = change.get("post_size", 9)
    pre = torch.zeros(2, 2, 9, 9)
    post = torch.zeros(2, 4, size, size, dtype=change.get("post_dtype", torch.float32))
    with pytest.raises(RuntimeError, match=message):
        torch.ops.plasticity_plugins_cpu.pair_stdp_conv2d_step(
            pre, pre, post, post, *kernel, *padding, 0.5, False
        )


# (batch, in, out): the Linear op works on blocks of 64 acc rows and <= 512 columns, chunks of
# 64 columns and transposes 8 x 8 squares; sizes on, around and below those multiples (1030:
# three column blocks of 344, each ending in a partial chunk)
COMPILED_LINEAR_CASES = [
    (3, 37, 13),
    (2, 8, 64),
    (4, 130, 65),
    (1, 1, 1),
    (5, 200, 129),
    (3, 1030, 70),
]


def _linear_step_args(batch, n_in, n_out, dtype, generator, pre_rate=0.3, post_rate=0.2):
    """(pre, pre_trace, post, post_trace) of one step on a Linear synapse."""
    pre = _graded_spikes((batch, n_in), pre_rate, dtype, generator)
    post = _graded_spikes((batch, n_out), post_rate, dtype, generator)
    return (
        pre,
        torch.rand(pre.shape, generator=generator).to(dtype),
        post,
        torch.rand(post.shape, generator=generator).to(dtype),
    )


def _linear_op(acc, pre, pre_trace, post, post_trace, causal_scale, anti_scale, nearest=False):
    """``pair_stdp_linear_`` with decays 0.8 (pre) and 0.6 (post)."""
    return torch.ops.plasticity_plugins_cpu.pair_stdp_linear_(
        acc, pre, pre_trace, post, post_trace, 0.8, 0.6, nearest, causal_scale, anti_scale
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", [*COMPILED_LINEAR_CASES, (32, 784, 400)])
def test_compiled_linear_step_matches_two_products(cpp_kernels, case, dtype):
    """The C++ op ``pair_stdp_linear_`` (one step) against the two products it replaces
    (``post^T pre_trace'`` with the advanced pre trace, and ``post_trace^T pre``, float64 on the
    same values), each term on its own (a zero scale skips it) and both together, added to what
    acc held; its traces against ``decay * trace + spikes`` and the nearest-spike rule."""
    g = torch.Generator().manual_seed(sum(case))
    pre, pre_trace, post, post_trace = _linear_step_args(*case, dtype, g)
    start = torch.randn(case[2], case[1], generator=g).to(dtype)
    tolerance = (
        dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    )
    for nearest in (False, True):
        if nearest:
            new_pre = torch.where(pre != 0, pre, 0.8 * pre_trace).double()
            new_post = torch.where(post != 0, post, 0.6 * post_trace).double()
        else:
            new_pre = 0.8 * pre_trace.double() + pre.double()
            new_post = 0.6 * post_trace.double() + post.double()
        causal = post.double().T @ new_pre
        anti = post_trace.double().T @ pre.double()
        for causal_scale, anti_scale in ((0.7, -0.3), (0.7, 0.0), (0.0, -0.3)):
            acc = start.clone()
            traces = _linear_op(
                acc, pre, pre_trace, post, post_trace, causal_scale, anti_scale, nearest
            )
            expected = start.double() + causal_scale * causal + anti_scale * anti
            torch.testing.assert_close(acc.double(), expected, **tolerance)
            torch.testing.assert_close(traces[0].double(), new_pre, **tolerance)
            torch.testing.assert_close(traces[1].double(), new_post, **tolerance)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_compiled_linear_step_without_and_with_every_spike(cpp_kernels, rate):
    """No spike leaves acc as it was; every neuron firing gives the dense products."""
    g = torch.Generator().manual_seed(5)
    pre, pre_trace, post, post_trace = _linear_step_args(4, 70, 66, torch.float64, g, rate, rate)
    start = torch.randn(66, 70, generator=g).double()
    acc = start.clone()
    new_pre_trace, _ = _linear_op(acc, pre, pre_trace, post, post_trace, 0.5, -0.25)
    expected = start + 0.5 * post.T @ new_pre_trace - 0.25 * post_trace.T @ pre
    torch.testing.assert_close(acc, expected, rtol=1e-12, atol=1e-12)


def test_compiled_linear_step_is_the_same_on_several_threads(cpp_kernels):
    """Threads own whole blocks of acc: the same bits on one thread and on three."""
    g = torch.Generator().manual_seed(6)
    args = _linear_step_args(7, 300, 200, torch.float32, g)
    start = torch.randn(200, 300, generator=g)
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            acc = start.clone()
            _linear_op(acc, *args, 0.5, -0.5)
            results.append(acc)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(*results)


@pytest.mark.parametrize(
    "change,message",
    [
        ("acc_transposed", "acc must be contiguous"),
        ("acc_shape", "acc must be \\[out, in\\]"),
        ("post_float64", "mixed dtypes"),
        ("pre_4d", "pre and post must be \\[B, n\\] \\(one step\\) or \\[T, B, n\\]"),
        ("pre_3d", "pre and post must be \\[B, n\\] \\(one step\\) or \\[T, B, n\\]"),
        ("steps", "pre has 2 steps but post has 3"),
        ("trace_shape", "each trace must have the shape of one step of its spikes"),
        ("int", "float32 or float64 only"),
    ],
)
def test_compiled_linear_step_rejects_what_it_cannot_compute(cpp_kernels, change, message):
    """The op's own checks (the rule sends such cases to the torch path)."""
    g = torch.Generator().manual_seed(7)
    pre, pre_trace, post, post_trace = _linear_step_args(2, 6, 4, torch.float32, g)
    acc = torch.zeros(4, 6)
    if change == "acc_transposed":
        acc = torch.zeros(6, 4).T
    elif change == "acc_shape":
        acc = torch.zeros(6, 4)
    elif change == "post_float64":
        post = post.double()
    elif change == "pre_4d":
        pre, post = pre[None, None], post[None, None]
    elif change == "pre_3d":
        pre, pre_trace = pre[None], pre_trace[None]
    elif change == "steps":
        pre, post = torch.stack([pre, pre]), torch.stack([post, post, post])
    elif change == "trace_shape":
        pre_trace = pre_trace[:, :5]
    elif change == "int":
        acc, pre, pre_trace = acc.int(), pre.int(), pre_trace.int()
        post, post_trace = post.int(), post_trace.int()
    before = acc.clone()
    with pytest.raises(RuntimeError, match=message):
        _linear_op(acc, pre, pre_trace, post, post_trace, 1.0, 1.0)
    assert torch.equal(acc, before)


@pytest.mark.parametrize("dependence", ["additive", "soft", "mozafari"])
@pytest.mark.parametrize("kind", ["all_to_all", "nearest"])
@pytest.mark.parametrize("case", COMPILED_LINEAR_CASES)
def test_pair_linear_compiled_and_torch_paths_agree(
    cpp_kernels, monkeypatch, case, kind, dependence
):
    """One-step calls and a whole-sequence call on a Linear through the C++ kernel and through
    the torch ops (the one-step path's two products, the sequence path's ``[T, B]`` terms), with
    each weight dependence: the same updates and traces."""
    batch, n_in, n_out = case
    g = torch.Generator().manual_seed(12)
    pre = _graded_spikes((6, batch, n_in), 0.3, torch.float64, g)
    post = _graded_spikes((6, batch, n_out), 0.3, torch.float64, g)
    weight = torch.rand(n_out, n_in, generator=g).double()
    kwargs = dict(
        _PATH_AMPLITUDES, kind=kind, factors=weight_factors(weight, dependence, 0.0, 1.0, 0.7)
    )

    run = _stepwise_then_whole(pre, post, weight, kwargs)
    _assert_compiled_and_torch_paths_agree(
        run,
        monkeypatch,
        pre,
        post,
        pre[0],
        post[0],
        weight,
        None,
        applies=stdp_kernels._compiled_linear_applies,
    )


@pytest.mark.parametrize("dependence", ["additive", "soft"])
@pytest.mark.parametrize("kind", ["all_to_all", "nearest"])
@pytest.mark.parametrize("dims", [1, 2])
def test_triplet_conv_compiled_and_torch_paths_agree(
    cpp_kernels, monkeypatch, dims, kind, dependence
):
    """Triplet STDP on a Conv1d / Conv2d through the C++ kernel (the amplitudes on the spikes,
    o1 advanced by the plain post spikes) and through the torch ops: one-step calls and a
    whole-sequence call give the same update and the same four traces."""
    g = torch.Generator().manual_seed(7 + dims)
    spatial_in, kernel, padding = ((9, 8), (3, 2), (1, 1)) if dims == 2 else ((13,), (4,), (2,))
    spatial_out = _output_size(spatial_in, padding, kernel)
    pre = _graded_spikes((5, 2, 3, *spatial_in), 0.3, torch.float64, g)
    post = _graded_spikes((5, 2, 4, *spatial_out), 0.3, torch.float64, g)
    geometry = ConvGeometry((1,) * dims, padding, (1,) * dims, 1)
    weight = torch.rand(4, 3, *kernel, generator=g).double()
    kwargs = dict(
        a2_plus=0.3,
        a3_plus=0.2,
        a2_minus=0.25,
        a3_minus=0.1,
        decays=(0.6, 0.7, 0.5, 0.8),
        alpha=0.5,
        kind=kind,
        conv=geometry,
        factors=weight_factors(weight, dependence, 0.0, 1.0, 0.7),
    )

    def zeros() -> TripletTraces:
        return TripletTraces(*(torch.zeros_like(x) for x in (pre[0], pre[0], post[0], post[0])))

    def run() -> tuple[torch.Tensor, ...]:
        acc, traces = torch.zeros_like(weight), zeros()
        for pre_t, post_t in zip(pre.split(1), post.split(1), strict=True):
            traces = triplet_stdp_accumulate_(acc, pre_t, post_t, traces, **kwargs)
        whole = torch.zeros_like(weight)
        whole_traces = triplet_stdp_accumulate_(whole, pre, post, zeros(), **kwargs)
        return acc, *traces, whole, *whole_traces

    _assert_compiled_and_torch_paths_agree(
        run, monkeypatch, pre[:1], post[:1], post[0], weight, geometry
    )


@pytest.mark.parametrize("dims", [1, 2])
def test_terms_accumulation_compiled_and_torch_paths_agree(cpp_kernels, monkeypatch, dims):
    """``accumulate_terms_`` (with a per-sample, per-step post scale and weight dependence) and
    ``accumulate_terms_per_sample_`` on a Conv1d / Conv2d: the C++ kernel (scale on the pre
    factors, per-sample sums) against the torch ops."""
    g = torch.Generator().manual_seed(3 + dims)
    spatial_in, kernel, padding = ((8, 9), (3, 3), (1, 0)) if dims == 2 else ((12,), (5,), (2,))
    spatial_out = _output_size(spatial_in, padding, kernel)
    pre = _graded_spikes((4, 3, 2, *spatial_in), 0.3, torch.float64, g)
    post = _graded_spikes((4, 3, 5, *spatial_out), 0.3, torch.float64, g)
    zeros = (torch.zeros_like(pre[0]), torch.zeros_like(post[0]))
    terms, _, _ = pair_stdp_terms(pre, post, *zeros, pre_decay=0.7, post_decay=0.6)
    geometry = ConvGeometry((1,) * dims, padding, (1,) * dims, 1)
    weight = torch.rand(5, 2, *kernel, generator=g).double()
    scale = torch.randn(4, 3, generator=g, dtype=torch.float64)
    amplitudes = dict(a_plus=0.4, a_minus=0.3, alpha=0.5, conv=geometry, post_scale=scale)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        total = accumulate_terms_(
            torch.zeros_like(weight),
            terms,
            factors=weight_factors(weight, "mozafari", 0.0, 1.0),
            **amplitudes,
        )
        per_sample = accumulate_terms_per_sample_(
            torch.zeros(3, *weight.shape, dtype=torch.float64), terms, **amplitudes
        )
        return total, per_sample

    _assert_compiled_and_torch_paths_agree(
        run, monkeypatch, terms.anti_pre, terms.causal_post, terms.anti_post, weight, geometry
    )
