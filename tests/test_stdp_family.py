"""The STDP family: weight dependence, triplet, Conv1d/Conv2d, Mozafari STDP / R-STDP, MSTDP(ET),
Diehl & Cook. Kernels against explicit loops, the SPECS numbers, bounds, frameworks, bad input."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import snntorch as snn
import torch
from stdp_reference import (
    conv_family_reference,
    first_spike_reference,
    k_winners_reference,
    linear_family_reference,
    pointwise_reference,
)
from torch import nn

import plasticity_plugins
from plasticity_plugins import InputError, StateError, UnsupportedModuleError
from plasticity_plugins.adapters import adapter_for
from plasticity_plugins.adapters.base import NeuronObservation, NeuronSpec
from plasticity_plugins.kernels import stdp as stdp_kernels
from plasticity_plugins.kernels.competition import k_winners
from plasticity_plugins.kernels.stdp import (
    TripletTraces,
    first_spike_stdp_accumulate_,
    pair_stdp_accumulate_,
    triplet_stdp_accumulate_,
    weight_factors,
)
from plasticity_plugins.kernels.synapse import (
    ConvGeometry,
    outer_accumulate_,
    outer_per_sample_accumulate_,
)
from plasticity_plugins.kernels.traces import decay_factor
from plasticity_plugins.networks import single_layer
from plasticity_plugins.rules import (
    MSTDP,
    MSTDPET,
    RSTDP,
    STDP,
    DiehlCook,
    MozafariSTDP,
    PairView,
    TripletSTDP,
    UpdateSink,
    diehl_cook,
    mozafari,
    mstdp,
    stdp,
    triplet,
)

SPEC = NeuronSpec("test", "none", 1.0, 1.0, 1.0, "zero", False)
DEPENDENCES = [("additive", None, None, 1.0), ("soft", 0.0, 1.0, 0.7), ("mozafari", 0.0, 1.0, 1.0)]


def drive(rule, synapse, x, s, u=None, state=None, adapter=None, first_step=0, sink=None):
    """Hand ``rule`` one forward call of a pair, as attach() would (identity routing)."""
    state = {} if state is None else state
    u = torch.zeros_like(s) if u is None else u
    view = PairView(
        name="syn->neuron",
        synapse=synapse,
        spec=SPEC,
        x=x,
        neuron=NeuronObservation(s, lambda: u, torch.zeros_like),
        to_synapse_output=lambda t: t,
        sink=sink or UpdateSink(),
        first_step=first_step,
        adapter=adapter,
    )
    rule.step(view, state)
    return state


def spikes(*shape, p=0.3, generator=None, dtype=torch.float64):
    return (torch.rand(*shape, generator=generator) < p).to(dtype)


def pair_params(d_pre, d_post):
    return dict(a2p=1.0, a3p=0.0, a2m=1.0, a3m=0.0, d_plus=d_pre, d_x=1.0, d_minus=d_post, d_y=1.0)


# ------------------------------------------------------------------------------ kernels


@pytest.mark.parametrize("kind", ["all_to_all", "nearest"])
@pytest.mark.parametrize("dependence", DEPENDENCES, ids=[d[0] for d in DEPENDENCES])
def test_pair_kernel_with_weight_dependence_matches_loop(kind, dependence):
    g = torch.Generator().manual_seed(1)
    pre, post = spikes(10, 3, 4, generator=g), spikes(10, 3, 5, generator=g)
    w = torch.rand(5, 4, generator=g, dtype=torch.float64) * 1.2 - 0.1  # some out of bounds
    d_pre, d_post = decay_factor(4.0), decay_factor(6.0)
    acc = torch.zeros(5, 4, dtype=torch.float64)
    pair_stdp_accumulate_(
        acc,
        pre,
        post,
        torch.zeros(3, 4).double(),
        torch.zeros(3, 5).double(),
        a_plus=0.7,
        a_minus=0.4,
        pre_decay=d_pre,
        post_decay=d_post,
        alpha=1 / 3,
        kind=kind,
        factors=weight_factors(w, *dependence),
    )
    expected = linear_family_reference(
        pre.numpy(), post.numpy(), pair_params(d_pre, d_post), kind, w.numpy(), 0.7, 0.4, dependence
    )
    np.testing.assert_allclose(acc.numpy(), expected, rtol=1e-12, atol=1e-14)


TRIPLET = dict(a2_plus=0.3, a3_plus=0.9, a2_minus=0.5, a3_minus=0.2)
TRIPLET_TAUS = (3.0, 7.0, 4.0, 9.0)


def triplet_params():
    d = [decay_factor(t) for t in TRIPLET_TAUS]
    return dict(a2p=0.3, a3p=0.9, a2m=0.5, a3m=0.2, d_plus=d[0], d_x=d[1], d_minus=d[2], d_y=d[3])


@pytest.mark.parametrize("kind", ["all_to_all", "nearest"])
@pytest.mark.parametrize("dependence", DEPENDENCES, ids=[d[0] for d in DEPENDENCES])
def test_triplet_kernel_matches_loop(kind, dependence):
    g = torch.Generator().manual_seed(2)
    pre, post = spikes(12, 2, 3, p=0.4, generator=g), spikes(12, 2, 4, p=0.4, generator=g)
    w = torch.rand(4, 3, generator=g, dtype=torch.float64)
    acc = torch.zeros(4, 3, dtype=torch.float64)
    zeros = TripletTraces(*(torch.zeros(2, n).double() for n in (3, 3, 4, 4)))
    triplet_stdp_accumulate_(
        acc,
        pre,
        post,
        zeros,
        **TRIPLET,
        decays=tuple(decay_factor(t) for t in TRIPLET_TAUS),
        alpha=1 / 2,
        kind=kind,
        factors=weight_factors(w, *dependence),
    )
    expected = linear_family_reference(
        pre.numpy(), post.numpy(), triplet_params(), kind, w.numpy(), dep=dependence
    )
    np.testing.assert_allclose(acc.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_triplet_stepwise_calls_equal_one_call():
    g = torch.Generator().manual_seed(3)
    pre, post = spikes(9, 2, 3, p=0.5, generator=g), spikes(9, 2, 2, p=0.5, generator=g)
    kwargs = dict(TRIPLET, decays=(0.8, 0.9, 0.7, 0.95), alpha=1.0, kind="all_to_all")
    zeros = TripletTraces(*(torch.zeros(2, n).double() for n in (3, 3, 2, 2)))
    whole = torch.zeros(2, 3, dtype=torch.float64)
    triplet_stdp_accumulate_(whole, pre, post, zeros, **kwargs)
    stepped = torch.zeros(2, 3, dtype=torch.float64)
    traces = zeros
    for t in range(9):
        traces = triplet_stdp_accumulate_(
            stepped, pre[t : t + 1], post[t : t + 1], traces, **kwargs
        )
    torch.testing.assert_close(stepped, whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "rule",
    [
        STDP(a_plus=0.7, a_minus=0.4, tau_pre=4, tau_post=6, weight_dependence="soft", mu=0.7,
             w_min=0.0, w_max=1.0),
        TripletSTDP(**TRIPLET, tau_plus=3, tau_x=7, tau_minus=4, tau_y=9, trace="nearest",
                    weight_dependence="mozafari", w_min=0.0, w_max=1.0),
    ],
    ids=["STDP-soft", "TripletSTDP-mozafari"],
)  # fmt: skip
def test_rules_wire_their_parameters_to_the_kernels(rule):
    g = torch.Generator().manual_seed(13)
    pre, post = spikes(10, 2, 3, p=0.4, generator=g), spikes(10, 2, 4, p=0.4, generator=g)
    fc = nn.Linear(3, 4, bias=False).double()
    with torch.no_grad():
        fc.weight.uniform_(0, 1, generator=g)
    state: dict = {}
    for start in (0, 6):  # two calls: the traces carry over
        drive(
            rule, fc, pre[start : start + 6], post[start : start + 6], state=state, first_step=start
        )
    w = fc.weight.detach().numpy()
    if isinstance(rule, STDP):
        params = pair_params(decay_factor(4), decay_factor(6))
        expected = linear_family_reference(
            pre.numpy(), post.numpy(), params, "all_to_all", w, 0.7, 0.4, ("soft", 0.0, 1.0, 0.7)
        )
    else:
        dep = ("mozafari", 0.0, 1.0, 1.0)
        expected = linear_family_reference(
            pre.numpy(), post.numpy(), triplet_params(), "nearest", w, dep=dep
        )
    np.testing.assert_allclose(-fc.weight.grad.numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vectorised_traces_equal_the_recursion(dtype):
    from plasticity_plugins.kernels.traces import trace_sequence, trace_step

    g = torch.Generator().manual_seed(14)
    for kind in ("all_to_all", "nearest"):
        for decay in (1.0, 0.99, 0.8, 0.05):
            for steps in (5, 37, 700):
                s = (torch.rand(steps, 3, 4, generator=g) < 0.3).to(dtype)
                s *= torch.randn(steps, 3, 4, generator=g, dtype=dtype)  # graded, signed
                initial = torch.randn(3, 4, generator=g, dtype=dtype)
                got = trace_sequence(s, initial, decay, kind)
                trace, rows = initial, []
                for t in range(steps):
                    trace = trace_step(trace, s[t], decay, kind)
                    rows.append(trace)
                tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
                torch.testing.assert_close(got, torch.stack(rows), **tol)


CONV_CASES = [
    # (dims, stride, padding, dilation, groups, dependence, kind)
    (2, 2, 1, 1, 1, DEPENDENCES[1], "all_to_all"),
    (2, 1, 2, 2, 2, DEPENDENCES[2], "nearest"),
    (1, 2, 1, 2, 2, DEPENDENCES[0], "nearest"),
    (1, 1, 0, 1, 1, DEPENDENCES[1], "all_to_all"),
    # stride 1, dilation 1, one group: the C++ kernel on CPU
    (2, 1, 1, 1, 1, DEPENDENCES[2], "nearest"),
    (2, 1, 0, 1, 1, DEPENDENCES[0], "all_to_all"),
    (1, 1, 2, 1, 1, DEPENDENCES[2], "nearest"),
]


@pytest.mark.parametrize("window", ["pair", "triplet"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_kernels_match_loop(case, window):
    dims, stride, padding, dilation, groups, dependence, kind = case
    g = torch.Generator().manual_seed(4)
    size = (7, 7) if dims == 2 else (11,)
    conv = (nn.Conv2d if dims == 2 else nn.Conv1d)(
        4, 4, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False
    ).double()
    with torch.no_grad():
        conv.weight.uniform_(0, 1, generator=g)
    geometry = ConvGeometry((stride,) * dims, (padding,) * dims, (dilation,) * dims, groups)
    pre = spikes(3, 2, 4, *size, p=0.4, generator=g)
    out_size = conv(pre[0]).shape[2:]
    post = spikes(3, 2, 4, *out_size, p=0.4, generator=g)
    w = conv.weight.detach()
    acc = torch.zeros_like(w)
    factors = weight_factors(w, *dependence)
    if window == "pair":
        d_pre, d_post = decay_factor(3.0), decay_factor(2.0)
        pair_stdp_accumulate_(
            acc,
            pre,
            post,
            torch.zeros_like(pre[0]),
            torch.zeros_like(post[0]),
            a_plus=0.3,
            a_minus=0.2,
            pre_decay=d_pre,
            post_decay=d_post,
            alpha=0.5,
            kind=kind,
            conv=geometry,
            factors=factors,
        )
        params, amplitudes = pair_params(d_pre, d_post), (0.3, 0.2)  # alpha = 1 / B
    else:
        zeros = TripletTraces(*(torch.zeros_like(t[0]) for t in (pre, pre, post, post)))
        triplet_stdp_accumulate_(
            acc,
            pre,
            post,
            zeros,
            **TRIPLET,
            decays=tuple(decay_factor(t) for t in TRIPLET_TAUS),
            alpha=0.5,
            kind=kind,
            conv=geometry,
            factors=factors,
        )
        params, amplitudes = triplet_params(), (1.0, 1.0)
    expected = conv_family_reference(
        pre.numpy(), post.numpy(), w.numpy(), geometry, params, kind, *amplitudes, dep=dependence
    )
    np.testing.assert_allclose(acc.numpy(), expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dims", [0, 1, 2])
def test_per_sample_outer_products_equal_one_call_per_sample(dims):
    g = torch.Generator().manual_seed(5)
    if dims == 0:
        post, pre, geometry, shape = torch.randn(3, 2, 4), torch.randn(3, 2, 5), None, (4, 5)
    else:
        geometry = ConvGeometry((2,) * dims, (1,) * dims, (1,) * dims, 2)
        size = (6,) * dims
        pre = torch.randn(3, 2, 4, *size, generator=g)
        conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(4, 6, 3, stride=2, padding=1, groups=2)
        post = torch.randn(3, 2, 6, *conv(pre[0]).shape[2:], generator=g)
        shape = tuple(conv.weight.shape)
    acc = torch.zeros(2, *shape)
    outer_per_sample_accumulate_(acc, post, pre, 0.5, geometry)
    for b in range(2):
        expected = outer_accumulate_(torch.zeros(shape), post[:, b], pre[:, b], 0.5, geometry)
        torch.testing.assert_close(acc[b], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dependence", DEPENDENCES, ids=[d[0] for d in DEPENDENCES])
@pytest.mark.parametrize("layer", ["linear", "conv1d", "conv2d"])
def test_first_spike_kernel_matches_loop(layer, dependence):
    g = torch.Generator().manual_seed(6)
    if layer == "linear":
        geometry, w = None, torch.rand(5, 7, generator=g, dtype=torch.float64)
        pre_shape, post_shape = (3, 7), (3, 5)
    elif layer == "conv1d":  # dilation 2, padding 2: receptive fields reach into the padding
        geometry = ConvGeometry((1,), (2,), (2,), 2)
        w = torch.rand(4, 3, 3, generator=g, dtype=torch.float64)
        pre_shape, post_shape = (3, 6, 7), (3, 4, 7)
    else:
        geometry = ConvGeometry((2, 2), (1, 1), (1, 1), 2)
        w = torch.rand(4, 2, 3, 3, generator=g, dtype=torch.float64)
        pre_shape, post_shape = (3, 4, 6, 6), (3, 4, 3, 3)
    pre_time = torch.randint(0, 6, pre_shape, generator=g).double()
    pre_time[torch.rand(pre_shape, generator=g) < 0.3] = math.inf
    post_time = torch.randint(0, 6, post_shape, generator=g).double()
    winners = torch.rand(post_shape, generator=g) < 0.3
    coef_plus, coef_minus = torch.tensor([0.5, 1.0, -2.0]), torch.tensor([0.25, 0.0, 1.5])
    acc = torch.zeros_like(w)
    first_spike_stdp_accumulate_(
        acc,
        pre_time,
        torch.where(winners, post_time, math.inf),
        winners.double(),
        a_plus=coef_plus.double(),
        a_minus=coef_minus.double(),
        alpha=1 / 3,
        conv=geometry,
        factors=weight_factors(w, *dependence),
    )
    expected = np.zeros(w.shape)
    for b in range(3):  # per-sample amplitudes: one reference call per sample
        one = [x[b : b + 1].numpy() for x in (pre_time, post_time, winners)]
        expected += first_spike_reference(
            *one, w.numpy(), geometry, float(coef_plus[b]), float(coef_minus[b]), dependence
        )
    np.testing.assert_allclose(acc.numpy(), expected / 3, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------- SPECS §4 (Diehl & Cook)


def _single_pair(rule, t_pre, t_post, steps=16, t_post2=None):
    fc = nn.Linear(1, 1, bias=False).double()
    pre = torch.zeros(steps, 1, 1, dtype=torch.float64)
    post = torch.zeros(steps, 1, 1, dtype=torch.float64)
    pre[t_pre] = 1
    post[t_post] = 1
    if t_post2 is not None:
        post[t_post2] = 1
    drive(rule, fc, pre, post)
    return -fc.weight.grad.item()


def test_diehl_cook_pair_timing():
    rule = DiehlCook(variant="pair", theta_plus=0.0)
    assert _single_pair(rule, 0, 10) == pytest.approx(0.01 * math.exp(-0.5), rel=1e-12)
    assert _single_pair(rule, 0, 10) == pytest.approx(6.065e-3, abs=5e-7)
    assert _single_pair(rule, 10, 0) == pytest.approx(-1e-4 * math.exp(-0.5), rel=1e-12)
    assert _single_pair(rule, 10, 0) == pytest.approx(-6.065e-5, abs=5e-9)
    assert _single_pair(rule, 4, 4) == pytest.approx(0.01, rel=1e-12)  # same step: LTP only


def test_diehl_cook_code_rule_first_post_spike_gives_zero():
    rule = DiehlCook(theta_plus=0.0)  # variant="code": the triplet-like rule
    assert _single_pair(rule, 0, 10) == 0.0
    # A second post spike sees post2 of the first: nu_post * pre(15) * post2(15 - eps).
    second = 0.01 * math.exp(-15 / 20) * math.exp(-5 / 40)
    assert _single_pair(rule, 0, 10, t_post2=15) == pytest.approx(second, rel=1e-12)
    # Pre after post: -nu_pre * post1.
    assert _single_pair(rule, 10, 0) == pytest.approx(-1e-4 * math.exp(-0.5), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_diehl_cook_normalises_columns_to_78(dtype):
    fc = nn.Linear(784, 100, bias=False).to(dtype)
    with torch.no_grad():
        fc.weight.uniform_(-0.2, 1.3)  # also outside [0, 1]: clipped first
    DiehlCook().after_optimizer_step(fc, {})
    sums = fc.weight.detach().double().sum(1)
    assert fc.weight.min() >= 0
    if dtype == torch.float64:
        torch.testing.assert_close(sums, torch.full_like(sums, 78.0), rtol=0, atol=1e-6)
    else:  # float32 carries 24 bits: 78 to 1e-6 relative
        torch.testing.assert_close(sums, torch.full_like(sums, 78.0), rtol=1e-6, atol=0)


def test_diehl_cook_theta_rises_by_theta_plus_per_spike_and_raises_the_threshold():
    fc = nn.Linear(3, 2, bias=False)
    nn.init.constant_(fc.weight, 1.0)
    neuron = snn.Leaky(beta=0.5, threshold=1.0, init_hidden=True)
    adapter = adapter_for(neuron)(neuron)
    rule = DiehlCook(theta_plus=0.05, tau_theta=1e7)
    state: dict = {}
    pending = {}
    total = torch.zeros(2)

    def on_step(observation):
        nonlocal total
        total = total + observation.s.sum((0, 1))
        view = PairView(
            "0->1",
            fc,
            adapter.spec,
            pending.pop("x"),
            observation,
            lambda t: t,
            UpdateSink(),
            adapter=adapter,
        )
        rule.step(view, state)

    adapter.install(on_step)
    x = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # drives ~3 and ~2 per step, B = 2
    with torch.no_grad():
        for _ in range(30):
            pending["x"] = x[None]
            neuron(fc(x))
    adapter.uninstall()
    assert total.sum() > 5
    expected = 0.05 * total.double()
    torch.testing.assert_close(state["theta"].double(), expected, rtol=1e-5, atol=0)
    assert adapter.threshold_offset is state["theta"]
    # The raised threshold silences the neurons: with theta > 2 per step input, no spikes.
    assert state["theta"].min() > 0.2
    rule.reset_state(state)
    assert set(state) == {"theta"}  # theta is learned state: it survives reset


def test_diehl_cook_theta_through_attach():
    fc = nn.Linear(3, 2, bias=False)
    nn.init.constant_(fc.weight, 1.0)
    net = nn.Sequential(fc, snn.Leaky(beta=0.5, init_hidden=True))
    handle = plasticity_plugins.attach(net, DiehlCook(theta_plus=0.05, tau_theta=1e7))
    with torch.no_grad():
        spikes_out = sum(net(torch.ones(2, 3)).sum(0) for _ in range(20))
    theta = handle.state_dict()["rules"]["0->1"]["theta"]
    torch.testing.assert_close(theta, 0.05 * spikes_out, rtol=1e-5, atol=0)
    assert torch.equal(handle.adapters["1"].threshold_offset, theta)
    handle.detach()


def test_diehl_cook_labels_and_predictions():
    counts = torch.tensor([[4.0, 0.0, 1.0, 0.0], [0.0, 3.0, 1.0, 0.0], [0.0, 5.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    assignments = DiehlCook.assign_labels(counts, labels, 3)
    assert assignments.tolist() == [0, 1, 0, -1]  # neuron 2: mean 1 for class 0 vs 0.5
    test_counts = torch.tensor([[0.0, 9.0, 0.0, 50.0], [3.0, 1.0, 4.0, 50.0]])
    # class 0: mean of neurons 0 and 2; class 1: neuron 1; neuron 3 (silent in training) ignored
    assert DiehlCook.predict(test_counts, assignments, 3).tolist() == [1, 0]
    with pytest.raises(InputError, match="labels"):
        DiehlCook.assign_labels(counts, torch.tensor([0, 1, 3]), 3)


# ------------------------------------------------------------------ SPECS §5 (Mozafari et al.)


def _run_snntorch(net, inputs):
    with torch.no_grad():
        return torch.stack([net(x_t) for x_t in inputs])


def test_mozafari_only_winners_kernels_change_by_a_w_one_minus_w():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 6, 3, padding=1, bias=False)
    nn.init.normal_(conv.weight, 0.8, 0.05)
    neuron = snn.Leaky(beta=1.0, threshold=3.0, reset_mechanism="none", init_hidden=True)
    net = nn.Sequential(conv, neuron)
    rule = MozafariSTDP(k=3, radius=1)
    handle = plasticity_plugins.attach(net, rule)
    inputs = torch.cumsum(spikes(6, 1, 2, 8, 8, p=0.08, dtype=torch.float32), 0).clamp(max=1)
    potentials = []
    with torch.no_grad():
        outs = []
        for x_t in inputs:
            outs.append(net(x_t))
            potentials.append(neuron.mem.clone())
    out = torch.stack(outs)
    handle.detach()
    first = torch.where(out.bool(), torch.arange(6).view(-1, 1, 1, 1, 1), 99).amin(0)
    time = torch.where(first < 99, first.double(), math.inf)
    assert torch.isfinite(time).sum() > 5, "the test needs spikes"
    mem = torch.stack(potentials)
    potential = mem.gather(0, first.clamp(max=5).unsqueeze(0)).squeeze(0)
    winners = k_winners(time, potential.double(), 3, 1)
    assert 1 <= int(winners.sum()) <= 3
    dw = -conv.weight.grad.double()
    w = conv.weight.detach().double()
    f = w * (1 - w)
    changed = (dw != 0).flatten(1).any(1)
    assert changed.tolist() == winners[0].flatten(1).any(1).tolist()  # only the winners' kernels
    moved = dw[changed]
    ratio = moved / f[changed]
    assert torch.all(
        torch.isclose(ratio, torch.tensor(0.004).double(), rtol=1e-5)
        | torch.isclose(ratio, torch.tensor(-0.003).double(), rtol=1e-5)
    )
    pre_time = torch.where(inputs.bool(), torch.arange(6).view(-1, 1, 1, 1, 1), 99).amin(0).double()
    pre_time[pre_time == 99] = math.inf
    expected = first_spike_reference(
        pre_time.numpy(),
        time.numpy(),
        winners.numpy(),
        w.numpy(),
        ConvGeometry((1, 1), (1, 1), (1, 1), 1),
        0.004,
        0.003,
        ("mozafari", 0.0, 1.0, 1.0),
    )
    np.testing.assert_allclose(dw.numpy(), expected, rtol=1e-5, atol=1e-9)


def test_mozafari_same_step_pre_and_post_is_ltp():
    fc = nn.Linear(3, 1, bias=False).double()
    nn.init.constant_(fc.weight, 0.6)
    pre = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]], dtype=torch.float64)
    post = torch.tensor([[[1.0]], [[1.0]]], dtype=torch.float64)  # first spike at step 0
    drive(MozafariSTDP(k=1, radius=None), fc, pre, post, u=torch.ones_like(post))
    dw = -fc.weight.grad[0]
    f = 0.6 * 0.4
    # pre 0 fired with the post neuron: LTP; pre 1 fired later and pre 2 never: LTD
    torch.testing.assert_close(dw, torch.tensor([0.004 * f, -0.003 * f, -0.003 * f]).double())


def test_mozafari_winners_accumulate_over_single_step_calls_like_one_call():
    g = torch.Generator().manual_seed(7)
    conv = nn.Conv2d(2, 4, 3, bias=False).double()
    with torch.no_grad():
        conv.weight.uniform_(0.2, 0.9, generator=g)
    pre = spikes(5, 2, 2, 6, 6, p=0.3, generator=g)
    post = torch.cumsum(spikes(5, 2, 4, 4, 4, p=0.05, generator=g), 0).clamp(max=1)
    u = torch.rand(5, 2, 4, 4, 4, generator=g, dtype=torch.float64)
    rule = MozafariSTDP(k=3, radius=1)
    drive(rule, conv, pre, post, u)
    whole = conv.weight.grad.clone()
    conv.weight.grad = None
    state: dict = {}
    for t in range(5):
        drive(rule, conv, pre[t : t + 1], post[t : t + 1], u[t : t + 1], state, first_step=t)
    torch.testing.assert_close(conv.weight.grad, whole, rtol=1e-12, atol=1e-15)
    assert whole.abs().sum() > 0


def test_mozafari_pointwise_winners_are_first_at_their_position():
    g = torch.Generator().manual_seed(11)
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.uniform_(0.2, 0.9, generator=g)
    pre = spikes(5, 2, 2, 5, 5, p=0.3, generator=g)
    post = torch.cumsum(spikes(5, 2, 4, 5, 5, p=0.1, generator=g), 0).clamp(max=1)
    u = torch.randint(1, 4, (5, 2, 4, 5, 5), generator=g).double()  # ties in potential too
    drive(MozafariSTDP(k=3, radius=None, pointwise=True), conv, pre, post, u)
    first = torch.where(post.bool(), torch.arange(5).view(-1, 1, 1, 1, 1), 99).amin(0)
    time = torch.where(first < 99, first.double(), math.inf).numpy()
    potential = u.gather(0, first.clamp(max=4).unsqueeze(0)).squeeze(0).numpy()
    keep = pointwise_reference(time, potential)
    winners = k_winners_reference(np.where(keep, time, np.inf), potential, 3, None)
    plain = k_winners_reference(time, potential, 3, None)
    assert not np.array_equal(winners, plain), "the case must tell pointwise from plain k-WTA"
    pre_time = torch.where(pre.bool(), torch.arange(5).view(-1, 1, 1, 1, 1), 99).amin(0).double()
    pre_time[pre_time == 99] = math.inf
    w = conv.weight.detach().numpy()
    expected = first_spike_reference(
        pre_time.numpy(), time, winners, w, ConvGeometry((1, 1), (1, 1), (1, 1), 1), 0.004,
        0.003, ("mozafari", 0.0, 1.0, 1.0),
    )  # fmt: skip
    np.testing.assert_allclose(-conv.weight.grad.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_mozafari_pointwise_needs_spatial_neurons_and_a_bool():
    fc = nn.Linear(3, 2, bias=False)
    x, s = spikes(2, 1, 3, dtype=torch.float32), torch.ones(2, 1, 2)
    with pytest.raises(InputError, match="pointwise=True needs neurons with spatial"):
        drive(MozafariSTDP(k=1, radius=None, pointwise=True), fc, x, s)
    with pytest.raises(ValueError, match="pointwise must be a bool"):
        MozafariSTDP(pointwise=1)


def test_mozafari_rate_schedule():
    rule = MozafariSTDP(k=1, radius=None)
    assert rule.update_rates(499) == (0.004, 0.003)
    assert rule.update_rates(500) == pytest.approx((0.008, 0.006))
    assert rule.update_rates(2500) == pytest.approx((0.128, 0.096))
    assert rule.update_rates(3000) == pytest.approx((0.15, 0.1125))  # capped at 0.15
    assert rule.rates == pytest.approx((0.15, 0.1125))
    fc = nn.Linear(2, 1, bias=False).double()
    nn.init.constant_(fc.weight, 0.5)
    drive(rule, fc, torch.ones(1, 1, 2).double(), torch.ones(1, 1, 1).double())
    assert -fc.weight.grad[0, 0].item() == pytest.approx(0.15 * 0.25)


def test_rstdp_reward_punishment_silence():
    g = torch.Generator().manual_seed(8)
    fc = nn.Linear(6, 4, bias=False).double()
    with torch.no_grad():
        fc.weight.uniform_(0.2, 0.8, generator=g)
    pre = spikes(4, 3, 6, p=0.4, generator=g)
    post = torch.cumsum(spikes(4, 3, 4, p=0.3, generator=g), 0).clamp(max=1)
    post[:, 2] = 0  # sample 2 is silent: no winner, no update
    u = torch.rand(4, 3, 4, generator=g, dtype=torch.float64)
    rule = RSTDP(k=2)
    state: dict = {}
    for t in range(4):
        drive(rule, fc, pre[t : t + 1], post[t : t + 1], u[t : t + 1], state, first_step=t)
    assert fc.weight.grad is None  # waits for the reward
    rule.reward(torch.tensor([2.0, -1.0, 1.0]))
    first = torch.where(post.bool(), torch.arange(4).view(-1, 1, 1), 99).amin(0).double()
    first[first == 99] = math.inf
    potential = u.gather(0, first.clamp(max=3).long().unsqueeze(0)).squeeze(0)
    winners = k_winners(first, potential, 2)
    pre_time = torch.where(pre.bool(), torch.arange(4).view(-1, 1, 1), 99).amin(0).double()
    pre_time[pre_time == 99] = math.inf
    additive = ("additive", None, None, 1.0)
    w = fc.weight.detach().numpy()
    rates = [(2 * 0.004, 2 * 0.003), (0.004 * -1, 0.0005 * -1), (0.004, 0.003)]
    expected = sum(
        first_spike_reference(
            pre_time[b : b + 1].numpy(),
            first[b : b + 1].numpy(),
            winners[b : b + 1].numpy(),
            w,
            None,
            *rates[b],
            additive,
        )
        for b in range(3)
    )
    np.testing.assert_allclose(-fc.weight.grad.numpy(), expected / 3, rtol=1e-12, atol=1e-15)
    assert winners[0].any() and winners[1].any()
    with pytest.raises(StateError, match="no forward call"):
        rule.reward(torch.ones(3))  # already delivered


def test_rstdp_adaptive_rates():
    rule = RSTDP()
    assert rule.adapt_rates(hit_ratio=0.75, miss_ratio=0.25) == pytest.approx(
        (0.001, 0.00075, -0.003, -0.000375)
    )
    assert rule.adapt_rates(hit_ratio=0.5, miss_ratio=0.5) == pytest.approx(
        (0.002, 0.0015, -0.002, -0.00025)
    )  # always from the configured rates
    with pytest.raises(ValueError, match="hit_ratio"):
        rule.adapt_rates(1.5, 0.0)


# -------------------------------------------------------------------- SPECS §6 (Florian 2007)


def _zeta_per_sample(pre, post, d_pre, d_post, a_plus, a_minus):
    """zeta_b[t] (T, B, out, in) by explicit loops over steps, samples and synapses."""
    steps, batch, n_in = pre.shape
    n_out = post.shape[2]
    zeta = np.zeros((steps, batch, n_out, n_in))
    for b in range(batch):
        for o in range(n_out):
            for i in range(n_in):
                x_pre = x_post = 0.0
                for t in range(steps):
                    post_before = x_post * d_post
                    x_pre = x_pre * d_pre + pre[t, b, i]
                    x_post = x_post * d_post + post[t, b, o]
                    zeta[t, b, o, i] = (
                        a_plus * post[t, b, o] * x_pre - a_minus * post_before * pre[t, b, i]
                    )
    return zeta


def _mstdp_reference(pre, post, reward, rule, eligibility):
    d_pre, d_post = decay_factor(rule.tau_pre), decay_factor(rule.tau_post)
    zeta = _zeta_per_sample(pre, post, d_pre, d_post, rule.a_plus, rule.a_minus)
    steps, batch = pre.shape[:2]
    dw = np.zeros(zeta.shape[2:])
    e = np.zeros(zeta.shape[1:])
    for t in range(steps):
        if eligibility:
            fed = zeta[t - 1] if rule.delayed else zeta[t]
            if rule.delayed and t == 0:
                fed = np.zeros_like(zeta[0])
            e = e * decay_factor(rule.tau_e) + fed / rule.tau_e
            signal = e
        else:
            signal = zeta[t]
        for b in range(batch):
            dw += reward[t, b] * signal[b] / batch
    return dw


@pytest.mark.parametrize(
    "rule",
    [MSTDP(a_plus=0.5, a_minus=0.3, tau_pre=3, tau_post=4)]
    + [MSTDPET(a_plus=0.5, a_minus=0.3, tau_pre=3, tau_post=4, tau_e=5, delayed=d) for d in (0, 1)],
    ids=["MSTDP", "MSTDPET", "MSTDPET-delayed"],
)
@pytest.mark.parametrize("chunk", [1, 4, 12])
def test_reward_modulated_rules_match_loop(rule, chunk):
    g = torch.Generator().manual_seed(9)
    pre, post = spikes(12, 3, 4, p=0.4, generator=g), spikes(12, 3, 2, p=0.4, generator=g)
    reward = torch.randn(12, 3, generator=g, dtype=torch.float64)
    fc = nn.Linear(4, 2, bias=False).double()
    state: dict = {}
    for start in range(0, 12, chunk):
        part = slice(start, start + chunk)
        drive(rule, fc, pre[part], post[part], state=state, first_step=start)
        r = reward[part]
        rule.reward(r[0] if chunk == 1 else r)  # [B] for a single step, [T, B] otherwise
    eligibility = isinstance(rule, MSTDPET)
    expected = _mstdp_reference(pre.numpy(), post.numpy(), reward.numpy(), rule, eligibility)
    np.testing.assert_allclose(-fc.weight.grad.numpy(), expected, rtol=1e-10, atol=1e-14)


def test_reward_multiplies_along_the_batch_axis_and_missing_reward_is_zero():
    g = torch.Generator().manual_seed(10)
    pre, post = spikes(3, 2, 3, p=0.6, generator=g), spikes(3, 2, 3, p=0.6, generator=g)
    fc = nn.Linear(3, 3, bias=False).double()  # out == in == 3: a post-axis broadcast would run
    rule = MSTDP(a_plus=1.0, a_minus=0.5, tau_pre=2, tau_post=2)
    state: dict = {}
    drive(rule, fc, pre[:1], post[:1], state=state)  # no reward for this call: r = 0
    drive(rule, fc, pre[1:], post[1:], state=state, first_step=1)
    rule.reward(torch.tensor([1.0, 0.0]))
    reward = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]).double()
    expected = _mstdp_reference(pre.numpy(), post.numpy(), reward.numpy(), rule, False)
    np.testing.assert_allclose(-fc.weight.grad.numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("eligibility", [True, False], ids=["MSTDPET", "MSTDP"])
@pytest.mark.parametrize("stride,groups", [(2, 2), (1, 1)])  # (1, 1): the C++ kernel on CPU
def test_reward_modulated_conv_matches_per_step_per_sample_reference(stride, groups, eligibility):
    g = torch.Generator().manual_seed(11)
    conv = nn.Conv2d(4, 4, 3, stride=stride, padding=1, groups=groups, bias=False).double()
    geometry = ConvGeometry((stride, stride), (1, 1), (1, 1), groups)
    if eligibility:
        rule = MSTDPET(a_plus=0.5, a_minus=0.3, tau_pre=3, tau_post=4, tau_e=5)
    else:
        rule = MSTDP(a_plus=0.5, a_minus=0.3, tau_pre=3, tau_post=4)
    pre = spikes(6, 2, 4, 6, 6, p=0.4, generator=g)
    post = spikes(6, 2, 4, *conv(pre[0]).shape[2:], p=0.4, generator=g)
    reward = torch.randn(6, 2, generator=g, dtype=torch.float64)
    state: dict = {}
    for t in range(6):
        drive(rule, conv, pre[t : t + 1], post[t : t + 1], state=state, first_step=t)
        rule.reward(reward[t])
    # reference: per step and per sample, zeta through the (loop-verified) GEMM kernel
    d_pre, d_post, d_e = decay_factor(3), decay_factor(4), decay_factor(5)
    x_pre, x_post = torch.zeros_like(pre[0]), torch.zeros_like(post[0])
    e = torch.zeros(2, *conv.weight.shape, dtype=torch.float64)
    dw = torch.zeros(conv.weight.shape, dtype=torch.float64)
    for t in range(6):
        post_before = x_post * d_post
        x_pre, x_post = x_pre * d_pre + pre[t], x_post * d_post + post[t]
        for b in range(2):
            zeta = outer_accumulate_(
                torch.zeros_like(dw), post[t, b : b + 1], x_pre[b : b + 1], 0.5, geometry
            )
            outer_accumulate_(zeta, post_before[b : b + 1], pre[t, b : b + 1], -0.3, geometry)
            e[b] = e[b] * d_e + zeta / 5
            dw += reward[t, b] * (e[b] if eligibility else zeta) / 2
    torch.testing.assert_close(-conv.weight.grad, dw, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------- bounds over 10^5 steps


BOUNDED = [
    STDP(a_plus=0.3, a_minus=0.35, tau_pre=3, tau_post=3, w_min=0.0, w_max=1.0),
    STDP(a_plus=0.3, a_minus=0.35, weight_dependence="soft", mu=0.5, w_min=-1.0, w_max=1.0),
    STDP(a_plus=0.9, a_minus=0.8, weight_dependence="mozafari", w_min=0.0, w_max=1.0),
    TripletSTDP(a2_plus=0.2, a3_plus=0.3, a2_minus=0.3, weight_dependence="soft", w_min=0, w_max=2),
    MozafariSTDP(a_plus=0.9, a_minus=0.7, k=2, radius=None),
    RSTDP(k=2, a_plus=0.5, a_minus=0.4, punish_a_plus=-0.6, punish_a_minus=-0.3),
    MSTDP(a_plus=0.4, a_minus=0.4, w_min=-0.5, w_max=0.5),
    MSTDPET(a_plus=0.4, a_minus=0.4, tau_e=3.0, w_min=-0.5, w_max=0.5),
    DiehlCook(theta_plus=0.0, nu_pre=0.2, nu_post=0.5, norm_target=2.0),
]


@pytest.mark.parametrize("rule", BOUNDED, ids=lambda r: type(r).__name__)
def test_weights_stay_finite_and_in_bounds_over_1e5_random_steps(rule):
    """10^5 random time steps in 200 calls of 500 steps, one SGD step and projection per call
    (large amplitudes, so the bounds are hit): every weight finite and inside its bounds.
    Diehl & Cook clip to [0, 1] and then normalise: weights >= 0, each row sums to the target."""
    g = torch.Generator().manual_seed(12)
    fc = nn.Linear(6, 4, bias=False)
    low, high = (0.0, 1.0) if isinstance(rule, DiehlCook) else (rule.w_min, rule.w_max)
    hits = 0
    with torch.no_grad():
        fc.weight.uniform_(low, high, generator=g)
    optimizer = torch.optim.SGD(fc.parameters(), lr=1.0)
    state: dict = {}
    steps = 500
    for call in range(200):
        pre = spikes(steps, 2, 6, p=0.3, generator=g, dtype=torch.float32)
        post = spikes(steps, 2, 4, p=0.2, generator=g, dtype=torch.float32)
        if isinstance(rule, MozafariSTDP | RSTDP):
            rule.reset_state(state)
        drive(rule, fc, pre, post, u=torch.rand(steps, 2, 4, generator=g), state=state)
        if isinstance(rule, MSTDP | RSTDP):
            rule.reward(torch.randn(2, generator=g) * 3)
        optimizer.step()
        rule.after_optimizer_step(fc, state)
        optimizer.zero_grad()
        w = fc.weight.detach()
        assert torch.isfinite(w).all(), f"call {call}"
        if isinstance(rule, DiehlCook):
            assert w.min() >= 0, f"call {call}: {w.min()}"
            torch.testing.assert_close(w.sum(1), torch.full((4,), 2.0))
            continue
        assert w.min() >= low and w.max() <= high, f"call {call}: [{w.min()}, {w.max()}]"
        hits += int(((w == low) | (w == high)).sum())
    assert isinstance(rule, DiehlCook) or hits > 0, "the amplitudes never reached a bound"


# ---------------------------------------------------------------------------- frameworks

STEPS, BATCH, N_IN, N_OUT = 20, 3, 10, 5
CASES = [("snntorch", False), ("spikingjelly", False), ("spikingjelly", True), ("norse", False)]


def _framework_grad(framework, multistep, weight, inputs, rule, rewards):
    net, linear = single_layer(framework, weight, multistep=multistep)
    handle = plasticity_plugins.attach(net, rule)
    per_step = isinstance(rule, MSTDP)
    with torch.no_grad():
        if multistep:
            net(inputs)
            if per_step:
                rule.reward(rewards)
        else:
            state = None
            for t, x_t in enumerate(inputs):
                if framework == "norse":
                    _, state = net(x_t, state)
                else:
                    net(x_t)
                if per_step:
                    rule.reward(rewards[t])
        if isinstance(rule, RSTDP):
            rule.reward(rewards[0])
    handle.detach()
    return linear.weight.grad.clone()


@pytest.mark.parametrize(
    "rule",
    [
        TripletSTDP(a2_plus=0.01, a3_plus=0.02, a2_minus=0.012, a3_minus=0.005, tau_x=8, tau_y=9),
        MSTDP(a_plus=0.01, a_minus=0.012, tau_pre=5, tau_post=7),
        MSTDPET(a_plus=0.01, a_minus=0.012, tau_pre=5, tau_post=7, tau_e=4),
        MozafariSTDP(k=2, radius=None, weight_dependence="additive"),
        RSTDP(k=2),
        DiehlCook(theta_plus=0.0),
    ],
    ids=lambda r: type(r).__name__,
)
def test_additive_rules_give_the_same_update_in_every_framework(rule):
    g = torch.Generator().manual_seed(3)
    inputs = (torch.rand(STEPS, BATCH, N_IN, generator=g) < 0.25).float()
    weight = torch.rand(N_OUT, N_IN, generator=g) * 0.3
    rewards = torch.randn(STEPS, BATCH, generator=g)
    grads = {case: _framework_grad(*case, weight, inputs, rule, rewards) for case in CASES}
    reference = grads["snntorch", False]
    assert reference.abs().sum() > 0
    for case, grad in grads.items():
        torch.testing.assert_close(grad, reference, rtol=1e-6, atol=1e-6, msg=str(case))


# ----------------------------------------------------------------------------- bad input


def test_bad_rewards_are_refused_with_clear_messages():
    fc = nn.Linear(3, 2, bias=False)
    rule = MSTDP()
    with pytest.raises(StateError, match="no forward call"):
        rule.reward(torch.ones(2))
    drive(rule, fc, spikes(1, 2, 3, dtype=torch.float32), spikes(1, 2, 2, dtype=torch.float32))
    with pytest.raises(InputError, match=r"reward of shape \(2, 2\).*\[B\] = \[2\]"):
        rule.reward(torch.ones(2, 2))
    with pytest.raises(InputError, match=r"reward of shape \(3,\)"):
        rule.reward(torch.ones(3))
    with pytest.raises(InputError, match="requires grad"):
        rule.reward(torch.ones(2, requires_grad=True))
    with pytest.raises(InputError, match="NaN"):
        rule.reward(torch.tensor([1.0, math.nan]))
    with pytest.raises(InputError, match="float or a Tensor"):
        rule.reward("good")  # type: ignore[arg-type]
    rule.reward(torch.ones(2))  # the pending update survived the refused rewards
    assert fc.weight.grad is not None


def test_k_larger_than_features_and_radius_without_space_are_refused():
    fc = nn.Linear(3, 2, bias=False)
    x, s = spikes(2, 1, 3, dtype=torch.float32), torch.ones(2, 1, 2)
    with pytest.raises(InputError, match=r"k=3 must be an int in \[1, 2\]"):
        drive(MozafariSTDP(k=3, radius=None), fc, x, s)
    with pytest.raises(InputError, match="radius=None"):
        drive(MozafariSTDP(k=1, radius=1), fc, x, s)
    with pytest.raises(ValueError, match="k must be"):
        RSTDP(k=0)


@pytest.mark.parametrize(
    "synapse,match",
    [
        (nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), "padding_mode"),
        (nn.Conv2d(2, 2, 2, padding="same"), "even kernel"),
        (nn.Conv3d(2, 2, 3), "Conv3d"),
    ],
    ids=["reflect", "same-even", "conv3d"],
)
@pytest.mark.parametrize(
    "rule", [TripletSTDP(), MozafariSTDP(), MSTDPET(), RSTDP(), DiehlCook()], ids=repr
)
def test_unsupported_conv_options_are_refused(synapse, match, rule):
    with pytest.raises(UnsupportedModuleError, match=match):
        rule.check_synapse("conv", synapse)


def test_bad_hyper_parameters_are_refused():
    with pytest.raises(ValueError, match="needs both w_min and w_max"):
        STDP(weight_dependence="soft")
    with pytest.raises(ValueError, match="w_min must be < w_max"):
        TripletSTDP(w_min=1.0, w_max=0.0)
    with pytest.raises(ValueError, match="mu must be > 0"):
        STDP(weight_dependence="soft", w_min=0, w_max=1, mu=0)
    with pytest.raises(ValueError, match="weight_dependence must be"):
        STDP(weight_dependence="multiplicative")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau_e"):
        MSTDPET(tau_e=0)
    with pytest.raises(ValueError, match="tau_y"):
        TripletSTDP(tau_y=-1)
    with pytest.raises(ValueError, match="variant"):
        DiehlCook(variant="paper")  # type: ignore[arg-type]


def test_diehl_cook_theta_without_the_neuron_adapter_is_refused():
    fc = nn.Linear(2, 2, bias=False)
    with pytest.raises(StateError, match=r"PairView\.adapter"):
        drive(DiehlCook(), fc, torch.ones(1, 1, 2), torch.ones(1, 1, 2))


@pytest.mark.parametrize("module", [stdp_kernels, stdp, triplet, mstdp, mozafari, diehl_cook])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_no_batch_by_weight_tensor_in_the_gemm_kernels(monkeypatch):
    """The additive pair/triplet kernels call outer_accumulate_ (one GEMM) with [rows, out] and
    [rows, in] factors only; nothing of size B * out * in is allocated."""
    shapes = []
    original = stdp_kernels.outer_accumulate_

    def spy(acc, post, pre, alpha, conv=None):
        shapes.append((tuple(post.shape), tuple(pre.shape)))
        return original(acc, post, pre, alpha, conv)

    monkeypatch.setattr(stdp_kernels, "outer_accumulate_", spy)
    monkeypatch.setenv("PLASTICITY_PLUGINS_CPU_EXT", "0")  # the torch path (else a C++ kernel)
    pre, post = spikes(5, 8, 30), spikes(5, 8, 20)
    acc = torch.zeros(20, 30, dtype=torch.float64)
    pair_stdp_accumulate_(
        acc, pre, post, torch.zeros(8, 30).double(), torch.zeros(8, 20).double(),
        a_plus=1.0, a_minus=1.0, pre_decay=0.5, post_decay=0.5, alpha=1.0,
    )  # fmt: skip
    assert shapes == [((80, 20), (80, 30))]
