"""Fast & Deep first-spike times (SPECS.md §3 checks 1-3) against Euler, loops and frameworks."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from torch import Tensor

import plasticity_plugins.kernels.spike_time as st
from plasticity_plugins.errors import InputError
from plasticity_plugins.kernels.spike_time import SpikeTimeParams, first_spike_times

special = pytest.importorskip("scipy.special")

F64 = torch.float64
EQUAL = SpikeTimeParams()  # tau_m = tau_s = theta = g_l = 1, E_l = 0
DOUBLE = SpikeTimeParams(tau_s=1.0, tau_ratio=2, g_l=0.5)  # tau_m = 2 tau_s, C = 1
CHECK_T = torch.tensor([[0.15, 0.5, 1.0]], dtype=F64)
CHECK_W = torch.tensor([[2.0], [1.5], [1.0]], dtype=F64)
T_CHECK1 = 0.7896356028
T_CHECK2 = 0.70595980558


# ----------------------------------------------------------------------------------------------
# references


def _euler_first_spikes(
    times: Tensor,
    weights: Tensor,
    p: SpikeTimeParams,
    dt: float,
    t_end: float,
    interpolate: bool = False,
) -> tuple[Tensor, Tensor]:
    """Forward Euler of ``tau_s dI/dt = -I``, ``C du/dt = -g_l (u - E_l) + I`` (float64).

    Input ``i`` adds ``w_i`` to ``I`` at the first grid point at or after ``t_i``. The Euler
    iterates ``I_n = sum_i w_i (1 - dt/tau_s)^(n - n_i)`` and
    ``u_n - E_l = sum_(m < n) r^(n-1-m) dt I_m / C`` (``r = 1 - dt/tau_m``) are evaluated in
    closed form with cumulative sums: the same numbers as the step loop, without the loop.
    Returns the first grid time with ``u >= theta`` (or, with ``interpolate``, the linear
    interpolation of the crossing between the two grid points around it; inf if none) and
    ``max u``, both ``[B, N_out]``.
    """
    n = round(t_end / dt)
    steps = torch.arange(n + 1, dtype=F64)
    rho = 1.0 - dt / p.tau_s
    arrival = torch.ceil(times / dt - 1e-6)  # guard 0.15 / 1e-5 = 14999.999...
    late = arrival > n
    # I_n = rho^n sum_(n_i <= n) w_i rho^(-n_i): deposits at the arrival steps, then a cumsum
    deposits = torch.zeros(n + 2, *times.shape, dtype=F64)
    index = torch.where(late, n + 1, arrival.nan_to_num(posinf=n + 1)).long()
    deposits.scatter_(0, index[None], torch.where(late, 0.0, rho ** -arrival.clamp_max(n))[None])
    current = (rho**steps)[:, None, None] * torch.einsum(
        "nbi,ij->nbj", torch.cumsum(deposits[: n + 1], 0), weights
    )
    r = 1.0 - dt / p.tau_m
    scaled = (r**-steps)[:, None, None] * (dt / p.capacitance) * current
    u = torch.zeros_like(current)
    u[1:] = (r ** (steps[1:] - 1))[:, None, None] * torch.cumsum(scaled, 0)[:-1]
    level = p.theta - p.e_l
    above = u >= level
    first = above.to(torch.uint8).argmax(0)
    crossing = first * dt
    if interpolate:
        u1 = u.gather(0, first[None])[0]
        u0 = u.gather(0, (first - 1).clamp_min(0)[None])[0]
        crossing = crossing - dt * (u1 - level) / (u1 - u0)
    return torch.where(above.any(0), crossing, math.inf), u.amax(0) + p.e_l


def _closed_form(ts: list[float], ws: list[float], p: SpikeTimeParams) -> float | None:
    """T for a given causal set (plain Python + scipy), None if the formula gives no spike."""
    if p.tau_ratio == 1:
        tau = p.tau_s
        a = sum(w * math.exp(t / tau) for t, w in zip(ts, ws, strict=True))
        b = sum(w * t / tau * math.exp(t / tau) for t, w in zip(ts, ws, strict=True))
        if a <= 0.0 or b / a > 700.0:  # exp(b / a) overflows: z = -inf, no spike
            return None
        z = -(p.c / a) * math.exp(b / a)
        if z < -math.exp(-1.0):
            return None
        return tau * (b / a - float(special.lambertw(z, 0).real))
    a1 = sum(w * math.exp(t / p.tau_s) for t, w in zip(ts, ws, strict=True))
    a2 = sum(w * math.exp(t / p.tau_m) for t, w in zip(ts, ws, strict=True))
    disc = a2 * a2 - 4.0 * a1 * p.c
    if disc < 0.0 or a1 <= 0.0 or a2 + math.sqrt(disc) <= 0.0:
        return None
    return p.tau_m * math.log(2.0 * a1 / (a2 + math.sqrt(disc)))


def _loop_first_spikes(times: Tensor, weights: Tensor, p: SpikeTimeParams) -> np.ndarray:
    """The causal-set search spelled out: per sample, per neuron, per candidate."""
    t = times.double().tolist()
    w = weights.double().tolist()
    n_in, n_out = len(w), len(w[0])
    out = np.full((len(t), n_out), np.inf)
    for b, row in enumerate(t):
        order = sorted(range(n_in), key=lambda i: row[i])
        sorted_t = [row[i] for i in order] + [math.inf]
        for j in range(n_out):
            for k in range(n_in):
                if math.isinf(sorted_t[k]):
                    break
                causal = order[: k + 1]
                spike = _closed_form([row[i] for i in causal], [w[i][j] for i in causal], p)
                if spike is not None and sorted_t[k] <= spike <= sorted_t[k + 1]:
                    out[b, j] = spike
                    break
    return out


def _random_layer(
    batch: int, n_in: int, n_out: int, p_missing: float = 0.2, w_mean: float = 1.2
) -> tuple[Tensor, Tensor]:
    times = 2.0 * torch.rand(batch, n_in, dtype=F64)
    times = times.masked_fill(torch.rand(batch, n_in) < p_missing, math.inf)
    weights = w_mean + 1.5 * torch.randn(n_in, n_out, dtype=F64)
    return times, weights


# ----------------------------------------------------------------------------------------------
# SPECS.md §3 checks 1-3


def test_check1_lambert_w_form_and_euler():
    spike = first_spike_times(CHECK_T, CHECK_W, EQUAL)
    assert spike.shape == (1, 1)
    assert spike.item() == pytest.approx(T_CHECK1, abs=1e-10)
    euler, _ = _euler_first_spikes(CHECK_T, CHECK_W, EQUAL, dt=1e-5, t_end=0.85)
    assert abs(euler.item() - spike.item()) < 6e-6, euler.item() - spike.item()


def test_check2_square_root_form_and_euler():
    times, weights = CHECK_T[:, :2], CHECK_W[:2]
    spike = first_spike_times(times, weights, DOUBLE)
    assert spike.item() == pytest.approx(T_CHECK2, abs=1e-10)
    euler, _ = _euler_first_spikes(times, weights, DOUBLE, dt=1e-5, t_end=0.85)
    assert abs(euler.item() - spike.item()) < 6e-6


def test_check3_gradients_against_central_differences():
    times = CHECK_T.clone().requires_grad_(True)
    weights = CHECK_W.clone().requires_grad_(True)
    first_spike_times(times, weights, EQUAL).sum().backward()
    assert weights.grad is not None and times.grad is not None
    dw, dt = weights.grad[:, 0], times.grad[0]
    torch.testing.assert_close(
        dw, torch.tensor([-0.286471, -0.184078, 0.0], dtype=F64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        dt, torch.tensor([0.322790, 0.677210, 0.0], dtype=F64), atol=1e-6, rtol=0
    )
    assert dt.sum().item() == pytest.approx(1.0, abs=1e-12)
    eps = 1e-6
    for i in range(3):
        step = torch.zeros(3, 1, dtype=F64)
        step[i] = eps
        fd_w = (
            first_spike_times(CHECK_T, CHECK_W + step) - first_spike_times(CHECK_T, CHECK_W - step)
        ) / (2 * eps)
        fd_t = (
            first_spike_times(CHECK_T + step.T, CHECK_W)
            - first_spike_times(CHECK_T - step.T, CHECK_W)
        ) / (2 * eps)
        assert fd_w.item() == pytest.approx(dw[i].item(), abs=1e-7)
        assert fd_t.item() == pytest.approx(dt[i].item(), abs=1e-7)


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_time_gradients_sum_to_one(params):
    times, weights = _random_layer(32, 6, 10)
    times.requires_grad_(True)
    spike = first_spike_times(times, weights, params)
    fired = torch.isfinite(spike)
    assert fired.any() and (~fired).any()
    for j in range(3):  # per neuron: sum_i dT_bj / dt_bi = 1 where it fires, else 0
        (grad,) = torch.autograd.grad(
            spike[:, j].nan_to_num(posinf=0.0).sum(), times, retain_graph=True
        )
        expected = fired[:, j].to(F64)
        torch.testing.assert_close(grad.sum(1), expected, atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------------------------
# the vectorised search, gradients


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_vectorised_search_matches_loop(params):
    times, weights = _random_layer(24, 7, 16, w_mean=0.5)
    times[0] = math.inf  # a sample without input spikes
    times[1, :-1] = math.inf  # a single input spike
    ours = first_spike_times(times, weights, params).numpy()
    ref = _loop_first_spikes(times, weights, params)
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
    fired = np.isfinite(ref)
    assert 0.25 < fired.mean() < 0.85  # both cases well represented
    assert np.all(np.isinf(ours[0]))
    np.testing.assert_allclose(ours[fired], ref[fired], rtol=0, atol=1e-11)
    # several candidates rejected before the accepted one: not just the first input each time
    ranks = [(times[b] < float(ours[b, j])).sum().item() for b, j in np.argwhere(fired)]
    assert len(set(ranks)) >= 3


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_float32_close_to_float64(params):
    times, weights = _random_layer(16, 6, 12, p_missing=0.0)
    ref = first_spike_times(times, weights, params)
    ours = first_spike_times(times.float(), weights.float(), params)
    assert ours.dtype == torch.float32
    both = torch.isfinite(ref) & torch.isfinite(ours)
    assert both.sum() >= 0.9 * torch.isfinite(ref).sum()
    torch.testing.assert_close(ours[both].double(), ref[both], atol=2e-5, rtol=0)


def _safe_spikes(times: Tensor, weights: Tensor, params: SpikeTimeParams) -> Tensor:
    """Neurons whose spike and causal set survive small perturbations (for finite differences)."""
    spike = first_spike_times(times, weights, params)
    gap = (spike[:, None, :] - times[:, :, None]).abs().amin(1)  # distance to the nearest input
    robust = torch.isfinite(first_spike_times(times, 0.9 * weights, params))
    return torch.isfinite(spike) & (gap > 0.02) & robust


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_gradcheck_random_causal_configurations(params):
    times, weights = _random_layer(6, 5, 8, p_missing=0.15)
    safe = _safe_spikes(times, weights, params)
    assert safe.sum() >= 10
    times.requires_grad_(True)
    weights.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t, w: first_spike_times(t, w, params)[safe], (times, weights), eps=1e-7, atol=1e-5
    )


def test_gradcheck_one_dimensional_input():
    times = torch.tensor([0.3, 0.1, math.inf, 0.2], dtype=F64, requires_grad=True)
    weights = torch.tensor([[1.0, 3.0], [2.0, 0.5], [1.0, 1.0], [1.5, 2.0]], dtype=F64)
    weights.requires_grad_(True)
    spike = first_spike_times(times, weights)
    assert spike.shape == (2,) and torch.isfinite(spike).all()
    assert torch.autograd.gradcheck(first_spike_times, (times, weights), eps=1e-7, atol=1e-5)


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_zero_gradients_outside_causal_sets_and_for_silent_neurons(params):
    times, weights = _random_layer(16, 6, 12)
    times.requires_grad_(True)
    weights.requires_grad_(True)
    spike = first_spike_times(times, weights, params)
    silent = torch.isinf(spike)
    assert silent.any()
    # upstream gradient 1 on every neuron, even silent ones (their T is inf): no NaN leaks
    spike.backward(torch.ones_like(spike), retain_graph=True)
    assert times.grad is not None and weights.grad is not None
    assert torch.isfinite(times.grad).all() and torch.isfinite(weights.grad).all()
    assert (times.grad[torch.isinf(times)] == 0).all()
    # per (sample, neuron): the gradient is supported exactly on inputs before the spike
    for b, j in [(b, j) for b in range(4) for j in range(12)]:
        g_t, g_w = torch.autograd.grad(spike[b, j], (times, weights), retain_graph=True)
        causal = times[b].detach() <= spike[b, j].detach()
        if silent[b, j]:
            assert (g_t == 0).all() and (g_w == 0).all()
        else:
            assert (g_w[~causal, j] == 0).all() and (g_t[b, ~causal] == 0).all()
            assert (g_w[causal, j] != 0).all() and (g_t[b, causal] != 0).all()
        others = torch.ones_like(g_w, dtype=torch.bool)
        others[:, j] = False
        assert (g_w[others] == 0).all()


def test_only_weights_require_grad():
    times, weights = _random_layer(4, 5, 6)
    weights.requires_grad_(True)
    spike = first_spike_times(times, weights)
    spike[torch.isfinite(spike)].sum().backward()
    assert weights.grad is not None and torch.isfinite(weights.grad).all()


def test_empty_and_silent_layers():
    weights = torch.ones(3, 2, dtype=F64, requires_grad=True)
    silent = first_spike_times(torch.full((2, 3), math.inf, dtype=F64), weights)
    assert torch.isinf(silent).all() and silent.shape == (2, 2)
    assert torch.isinf(first_spike_times(torch.zeros(2, 0), torch.zeros(0, 4))).all()
    assert first_spike_times(torch.zeros(0, 3, dtype=F64), weights).shape == (0, 2)
    # inhibition only: never fires
    assert torch.isinf(first_spike_times(torch.zeros(1, 3, dtype=F64), -weights)).all()


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_shift_equivariance_and_late_inputs(params):
    times, weights = _random_layer(8, 5, 6, p_missing=0.0)
    spike = first_spike_times(times, weights, params)
    shifted = first_spike_times(times + 50.0, weights, params)
    fired = torch.isfinite(spike)
    torch.testing.assert_close(shifted[fired], spike[fired] + 50.0, atol=1e-9, rtol=0)
    assert torch.equal(torch.isfinite(shifted), fired)


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_long_input_spans(params):
    # the spike comes from the last two inputs; the first one's PSP has long decayed
    for span in (50.0, 300.0):
        times = torch.tensor([[0.0, span, span + 0.1]], dtype=F64, requires_grad=True)
        weights = torch.tensor([[1.0], [3.0], [3.0]], dtype=F64)
        ref = first_spike_times(times[:, 1:].detach() - span, weights[1:], params) + span
        spike = first_spike_times(times, weights, params)
        torch.testing.assert_close(spike, ref, atol=1e-9 * span, rtol=0)
        spike.sum().backward()
        assert times.grad is not None and torch.isfinite(times.grad).all()
        # float32 past exp's range (~88 tau_s) is computed in float64 and cast back
        spike32 = first_spike_times(times.detach().float(), weights.float(), params)
        assert spike32.dtype == torch.float32
        torch.testing.assert_close(spike32.double(), ref, atol=1e-6 * span, rtol=0)
    with pytest.raises(InputError, match="span"):
        first_spike_times(torch.tensor([[0.0, 800.0]]), torch.ones(2, 1), params)


def test_exactly_grazing_neuron_does_not_pollute_other_gradients():
    # neuron 1: one input w = 2 with tau_m = 2 tau_s, g_l = 0.5: peak exactly theta (s = 0)
    times = torch.tensor([[0.0, 0.3]], dtype=F64, requires_grad=True)
    weights = torch.tensor([[3.0, 2.0], [1.0, 0.0]], dtype=F64, requires_grad=True)
    spike = first_spike_times(times, weights, DOUBLE)
    assert spike[0, 1].item() == pytest.approx(2 * math.log(2.0), abs=1e-12)
    spike[:, 0].sum().backward()
    assert times.grad is not None and weights.grad is not None
    assert torch.isfinite(times.grad).all() and torch.isfinite(weights.grad).all()
    assert (weights.grad[:, 1] == 0).all()


@pytest.mark.parametrize("ratio", [1, 2])
def test_euler_converges_to_closed_form_with_general_parameters(ratio):
    times, weights = _random_layer(12, 5, 6, w_mean=0.8)
    times = torch.round(times * 1e4) * 1e-4  # on both grids: no input-time quantisation error
    params = SpikeTimeParams(tau_s=0.7, tau_ratio=ratio, theta=0.5, e_l=-0.2, g_l=1.3)
    spike = first_spike_times(times, weights, params)
    coarse, peak = _euler_first_spikes(times, weights, params, 1e-4, 3.0, interpolate=True)
    fine, _ = _euler_first_spikes(times, weights, params, 2.5e-5, 3.0, interpolate=True)
    # away from grazing spikes (peak near theta: T is ill-conditioned there) and the window end
    clear = ((peak - params.theta).abs() > 0.02) & (spike < 2.5)
    assert torch.equal(torch.isfinite(fine)[clear], torch.isfinite(spike)[clear])
    both = clear & torch.isfinite(spike)
    assert both.sum() >= 5
    err_coarse = (coarse - spike)[both].abs()
    err_fine = (fine - spike)[both].abs()
    assert err_coarse.max() < 2e-3 and err_fine.max() < 5e-4
    # first order: a 4x smaller step gives a ~4x smaller error, spike by spike
    assert (err_fine <= 0.3 * err_coarse + 1e-9).all(), err_fine / err_coarse


# ----------------------------------------------------------------------------------------------
# frameworks' first spikes (SPECS.md, "What the existing libraries get wrong")

FRAMEWORK_DT = 1e-3


def _input_steps(times: Tensor, dt: float, n_steps: int) -> Tensor:
    """One-hot input spikes ``[n_steps, B, N_in]``: input i at the first step at or after t_i."""
    index = torch.ceil(times / dt - 1e-6).clamp_max(n_steps).nan_to_num(posinf=n_steps).long()
    steps = torch.zeros(n_steps + 1, *times.shape)
    steps.scatter_(0, index[None], 1.0)
    return steps[:n_steps]


def _first_step(spikes: Tensor) -> Tensor:
    fired = spikes.any(0)
    return torch.where(fired, spikes.to(torch.uint8).argmax(0).double(), math.inf)


def _framework_case(params: SpikeTimeParams) -> tuple[Tensor, Tensor, Tensor]:
    times = torch.rand(8, 5, dtype=F64)
    weights = 1.5 + torch.randn(5, 12, dtype=F64)
    return times, weights, first_spike_times(times, weights, params) / FRAMEWORK_DT


def _conditioning(times: Tensor, weights: Tensor, params: SpikeTimeParams) -> tuple[Tensor, Tensor]:
    """How much a discretisation can move each spike, ``[B, N_out]`` each (0 where silent).

    ``N = |sum of the negative dT/dt_i|``: delaying every input by ``delta_i in [0, dt)`` (what a
    grid does) moves ``T`` by ``sum_i dT/dt_i delta_i``, in ``[-N dt, (1 + N) dt]`` since
    ``sum_i dT/dt_i = 1``. ``S = |dT/d log s|`` for weights scaled by ``s``, i.e. ``u / u'`` at
    ``T``: a relative membrane error ``eps`` moves ``T`` by ``eps S`` (large for grazing spikes).
    """
    t = times.clone().requires_grad_(True)
    spike = first_spike_times(t, weights, params)
    negative = torch.zeros_like(spike)
    for j in range(spike.shape[1]):
        (grad,) = torch.autograd.grad(
            spike[:, j].nan_to_num(posinf=0.0).sum(), t, retain_graph=True
        )
        negative[:, j] = grad.clamp_max(0.0).sum(1).abs()
    h = 1e-6
    up, down = (first_spike_times(times, weights * (1 + sign * h), params) for sign in (1, -1))
    scale = ((up - down) / (2 * h)).nan_to_num(nan=0.0, posinf=0.0).abs()
    return negative, scale


def _step_differences(analytic: Tensor, framework: Tensor) -> tuple[Tensor, Tensor]:
    """Spike-step differences where both fire; the same neurons fire (grazing ones aside)."""
    both = torch.isfinite(analytic) & torch.isfinite(framework)
    assert both.sum() >= 40
    differ = torch.isfinite(analytic) != torch.isfinite(framework)
    assert differ.sum() <= 2, differ.sum()
    return (framework - analytic).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0), both


def _snntorch_gain(params: SpikeTimeParams, dt: float) -> float:
    """Input scale that makes snnTorch's ``Synaptic`` sample the continuous PSP exactly.

    ``syn_n = alpha syn_(n-1) + x_n``, ``mem_n = beta mem_(n-1) + syn_n`` answer one input
    ``x`` at step 0 with ``mem_k = x (beta^(k+1) - alpha^(k+1)) / (beta - alpha)``; the PSP is
    ``u(t) = (w / C) tau' (e^(-t/tau_m) - e^(-t/tau_s))``, ``tau' = tau_m tau_s / (tau_m - tau_s)``,
    so ``x = w tau' (beta - alpha) / C`` gives ``mem_k = u((k + 1) dt)``; for ``tau_m = tau_s``
    the limit is ``x = w dt alpha / C`` (SPECS.md: ``w dt exp(-dt/tau_s) / C``).
    """
    alpha, beta = math.exp(-dt / params.tau_s), math.exp(-dt / params.tau_m)
    if params.tau_ratio == 1:
        return dt * alpha / params.capacitance
    tau_prime = params.tau_m * params.tau_s / (params.tau_m - params.tau_s)
    return tau_prime * (beta - alpha) / params.capacitance


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_snntorch_synaptic_first_spike_within_one_step(params):
    snn = pytest.importorskip("snntorch")
    times, weights, analytic = _framework_case(params)
    dt, n_steps = FRAMEWORK_DT, 3000
    # the same inputs moved onto the grid: then mem_n = u(t_n + dt) exactly, so the first step
    # with mem > theta lies in [T/dt - 1, T/dt]
    on_grid = torch.round(times / dt) * dt
    grid_analytic = first_spike_times(on_grid, weights, params) / dt
    inputs = _input_steps(torch.cat([times, on_grid]), dt, n_steps).double()
    drive = torch.einsum("nbi,ij->nbj", inputs, _snntorch_gain(params, dt) * weights)
    lif = snn.Synaptic(  # float64 throughout, so that only the discretisation is measured
        alpha=torch.tensor(math.exp(-dt / params.tau_s), dtype=F64),
        beta=torch.tensor(math.exp(-dt / params.tau_m), dtype=F64),
        threshold=params.theta - params.e_l,
        reset_mechanism="none",
    )
    first = _first_step(torch.stack([lif(x)[0] for x in drive]).bool())
    diff, _ = _step_differences(grid_analytic, first[len(times) :])
    assert diff.min() >= -1.0 - 1e-6 and diff.max() <= 1e-6, (diff.min(), diff.max())
    # off the grid: within one step wherever no input has dT/dt_i < 0 (then the grid can only
    # delay the spike, by less than a step), within 1 + N steps in general
    diff, both = _step_differences(analytic, first[: len(times)])
    negative, _ = _conditioning(times, weights, params)
    monotone = both & (negative == 0)
    assert monotone.sum() >= 30
    assert diff[monotone].abs().max() <= 1.0
    assert (diff.abs() <= 1.0 + negative + 1e-3)[both].all()


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_norse_lifcell_first_spike_within_five_steps(params):
    norse = pytest.importorskip("norse.torch")
    times, weights, analytic = _framework_case(params)
    dt, n_steps = FRAMEWORK_DT, 3000
    # forward Euler of tau_m dv/dt = v_leak - v + i, tau_s di/dt = -i; i jumps by w / g_l
    p = norse.LIFParameters(
        tau_syn_inv=torch.as_tensor(1.0 / params.tau_s),
        tau_mem_inv=torch.as_tensor(1.0 / params.tau_m),
        v_leak=torch.as_tensor(params.e_l),
        v_th=torch.as_tensor(params.theta),
        v_reset=torch.as_tensor(params.e_l),
    )
    cell = norse.LIFCell(p, dt=dt)
    drive = torch.einsum(
        "nbi,ij->nbj", _input_steps(times, dt, n_steps), (weights / params.g_l).float()
    )
    state, spikes = None, []
    for x in drive:
        z, state = cell(x, state)
        spikes.append(z.bool())
    diff, both = _step_differences(analytic, _first_step(torch.stack(spikes)))
    negative, scale = _conditioning(times, weights, params)
    # within 5 steps unless ill-conditioned (grazing: Euler's O(dt) membrane error times S)
    well = both & (negative <= 1.0) & (scale <= 5.0)
    assert well.sum() >= 0.9 * both.sum()
    assert diff[well].abs().max() <= 5.0
    assert (diff.abs() <= 2.0 + negative + 0.5 * scale)[both].all()


# ----------------------------------------------------------------------------------------------
# errors, devices, docs


@pytest.mark.parametrize(
    ("times", "weights", "match"),
    [
        (torch.zeros(2, 3), torch.zeros(4, 2), "N_in"),
        (torch.zeros(2, 3), torch.zeros(3), r"\[N_in, N_out\]"),
        (torch.zeros(2, 2, 3), torch.zeros(3, 2), "N_in"),
        (torch.tensor([[0.1, math.nan]]), torch.ones(2, 1), "NaN"),
        (torch.tensor([[0.1, -math.inf]]), torch.ones(2, 1), "-inf"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2), "float32 or float64"),
        (torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.int32), "float32 or float64"),
        (torch.zeros(2, 3, dtype=torch.float16), torch.zeros(3, 2, dtype=torch.float16), "float16"),
        (torch.zeros(2, 3), torch.zeros(3, 2, dtype=F64), "same dtype"),
        (torch.zeros(2, 3), torch.tensor([[1.0], [math.inf], [0.0]]), "weights contain"),
        ([[0.1, 0.2]], torch.zeros(2, 1), "torch.Tensor"),
    ],
)
def test_bad_inputs(times, weights, match):
    with pytest.raises(InputError, match=match):
        first_spike_times(times, weights)


def test_bad_params():
    with pytest.raises(InputError, match="tau_ratio"):
        SpikeTimeParams(tau_ratio=3)
    with pytest.raises(InputError, match="theta > e_l"):
        SpikeTimeParams(theta=0.0, e_l=0.0)
    with pytest.raises(InputError, match="tau_s"):
        SpikeTimeParams(tau_s=0.0)
    with pytest.raises(InputError, match="g_l"):
        SpikeTimeParams(g_l=-1.0)
    with pytest.raises(InputError, match="SpikeTimeParams"):
        first_spike_times(CHECK_T, CHECK_W, params={"tau_s": 1.0})  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        EQUAL.theta = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("params", [EQUAL, DOUBLE], ids=["tau_m=tau_s", "tau_m=2tau_s"])
def test_devices_and_dtypes(device, dtype, params):
    times, weights = _random_layer(8, 6, 10)
    ref_t = times.clone().requires_grad_(True)
    ref_w = weights.clone().requires_grad_(True)
    ref = first_spike_times(ref_t, ref_w, params)
    t = times.to(device, dtype).requires_grad_(True)
    w = weights.to(device, dtype).requires_grad_(True)
    out = first_spike_times(t, w, params)
    assert out.device.type == device and out.dtype == dtype
    fired = torch.isfinite(ref) & torch.isfinite(out.cpu())
    assert fired.sum() >= 0.9 * torch.isfinite(ref).sum()
    tol = 1e-10 if dtype == F64 else 5e-5
    torch.testing.assert_close(out.cpu()[fired].double(), ref[fired], atol=tol, rtol=0)
    # gradients on the neurons both fire, away from causal-set boundaries
    safe = fired & _safe_spikes(times, weights, params)
    ref[safe].sum().backward()
    out[safe.to(device)].sum().backward()
    assert t.grad is not None and w.grad is not None
    assert ref_t.grad is not None and ref_w.grad is not None
    torch.testing.assert_close(t.grad.cpu().double(), ref_t.grad, atol=100 * tol, rtol=1e-3)
    torch.testing.assert_close(w.grad.cpu().double(), ref_w.grad, atol=100 * tol, rtol=1e-3)


def test_doctests():
    assert doctest.testmod(st, raise_on_error=False).failed == 0
