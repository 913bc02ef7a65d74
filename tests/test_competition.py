"""Competition kernels: k-WTA, pointwise and lateral inhibition, adaptive thresholds,
normalisation; against straightforward loops and the SPECS §4/§5 checks."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
import torch
from stdp_reference import k_winners_reference, pointwise_reference

from plasticity_plugins import InputError
from plasticity_plugins.kernels import competition
from plasticity_plugins.kernels.competition import (
    adaptive_threshold,
    first_spike_times,
    k_winners,
    lateral_inhibition,
    normalize_weights_,
    one_spike_per_step,
    pointwise_inhibition,
    value_at_first_spike,
)


@pytest.fixture(params=["cpp", "torch"])
def kwta_impl(request, monkeypatch):
    """Runs a k_winners test through each implementation: the C++ kernel of CPU tensors (which
    must build wherever there is a C++ compiler) and the torch ops of CUDA tensors / the
    fallback (forced with ``PLASTICITY_PLUGINS_CPU_EXT=0``)."""
    if request.param == "torch":
        monkeypatch.setenv("PLASTICITY_PLUGINS_CPU_EXT", "0")
    else:
        request.getfixturevalue("cpp_kernels")
    return request.param


def random_times(shape, generator, p_silent=0.4, steps=4):
    """Few distinct times and quantised potentials, so ties in both happen."""
    time = torch.randint(0, steps, shape, generator=generator).double()
    time[torch.rand(shape, generator=generator) < p_silent] = math.inf
    potential = torch.randint(0, 3, shape, generator=generator).double()
    return time, potential


def odd_inputs(shape, generator, steps=4, nan_potentials=False):
    """Times with NaN and -inf (did not spike) and potentials <= 0 and +-inf (and NaN, which
    the loop reference cannot order, when asked), float64."""
    time = torch.randint(0, steps, shape, generator=generator).double()
    r = torch.rand(shape, generator=generator)
    time[r < 0.5] = math.inf
    time[(r > 0.5) & (r < 0.55)] = -math.inf
    time[(r > 0.55) & (r < 0.6)] = math.nan
    potential = torch.randint(-1, 3, shape, generator=generator).double()
    q = torch.rand(shape, generator=generator)
    potential[q < 0.1] = -math.inf
    potential[q > 0.9] = math.inf
    if nan_potentials:
        potential[(q > 0.4) & (q < 0.45)] = math.nan
    return time, potential


@pytest.mark.parametrize(
    "shape,k,radius",
    [
        ((4, 6, 7, 7), 5, 3),
        ((4, 6, 7, 7), 3, 0),
        ((4, 8, 5, 6), 8, 1),
        ((3, 5, 9), 4, 2),  # Conv1d layout
        ((5, 7), 4, None),  # Linear layout: no spatial dimensions
        ((4, 6, 7, 7), 6, None),
    ],
)
def test_k_winners_matches_loop_on_random_inputs(shape, k, radius, kwta_impl):
    g = torch.Generator().manual_seed(sum(shape) + k)
    for _ in range(5):
        time, potential = random_times(shape, g)
        got = k_winners(time, potential, k, radius)
        expected = k_winners_reference(time.numpy(), potential.numpy(), k, radius)
        np.testing.assert_array_equal(got.numpy(), expected)


def test_k_winners_matches_loop_on_odd_values_and_sparse_float32_inputs(kwta_impl):
    """The slow exact path: NaN / -inf times (did not spike), potentials <= 0, +-inf, features
    whose earliest spikes are all inhibited; and the benchmark's float32 layout."""
    g = torch.Generator().manual_seed(11)
    for trial in range(60):
        time, potential = odd_inputs((3, 5, 6, 6), g)
        got = k_winners(time, potential, 4, 1 + trial % 2)
        expected = k_winners_reference(time.numpy(), potential.numpy(), 4, 1 + trial % 2)
        np.testing.assert_array_equal(got.numpy(), expected)
    time = torch.randint(0, 15, (4, 8, 12, 12), generator=g).float()
    time[torch.rand(time.shape, generator=g) < 0.97] = math.inf
    potential = torch.where(time.isfinite(), 15 + 5 * torch.rand(time.shape, generator=g), 0.0)
    got = k_winners(time, potential, 5, 3)
    expected = k_winners_reference(time.double().numpy(), potential.double().numpy(), 5, 3)
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize(
    "shape,k,radius",
    [
        ((6, 12, 9, 9), 1, 2),
        ((6, 12, 9, 9), 5, 2),
        ((6, 12, 9, 9), 12, 0),
        ((6, 12, 9, 9), 12, None),
        ((5, 10, 40), 6, 3),
        ((7, 20), 20, None),
    ],
)
def test_k_winners_matches_loop_with_ties(shape, k, radius, kwta_impl):
    """float32 inputs with few distinct times and potentials: equal (time, potential) pairs
    across features and positions are common, so tie-breaking decides most winners."""
    g = torch.Generator().manual_seed(sum(shape) + k)
    for _ in range(5):
        time = torch.randint(0, 3, shape, generator=g).float()
        time[torch.rand(shape, generator=g) < 0.5] = math.inf
        potential = torch.randint(1, 4, shape, generator=g).float()
        potential[time == math.inf] = 0.0  # silent neurons: 0, as after value_at_first_spike
        got = k_winners(time, potential, k, radius)
        expected = k_winners_reference(time.double().numpy(), potential.double().numpy(), k, radius)
        np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_k_winners_properties(radius, kwta_impl):
    g = torch.Generator().manual_seed(radius)
    time, potential = random_times((6, 10, 9, 9), g, p_silent=0.2, steps=6)
    k = 5
    winners = k_winners(time, potential, k, radius)
    for b in range(6):
        chosen = winners[b].nonzero().tolist()
        assert len(chosen) <= k
        assert len({f for f, _, _ in chosen}) == len(chosen)  # distinct features
        for (_, y1, x1), (_, y2, x2) in itertools.combinations(chosen, 2):
            assert max(abs(y1 - y2), abs(x1 - x2)) > radius  # none within Chebyshev r
        assert all(math.isfinite(time[b, f, y, x]) for f, y, x in chosen)  # all spiked
    assert int(winners.sum()) > 6  # the test exercises several winners per sample


def test_earlier_spike_beats_larger_potential(kwta_impl):
    time = torch.full((1, 2, 1, 5), math.inf)
    potential = torch.zeros(1, 2, 1, 5)
    time[0, 0, 0, 0], potential[0, 0, 0, 0] = 3.0, 100.0  # late, huge potential
    time[0, 1, 0, 4], potential[0, 1, 0, 4] = 1.0, 0.5  # early, small potential
    winners = k_winners(time, potential, k=1, radius=0)
    assert winners[0, 1, 0, 4] and int(winners.sum()) == 1
    time[0, 0, 0, 0] = 1.0  # same time: the larger potential wins
    assert k_winners(time, potential, k=1, radius=0)[0, 0, 0, 0]


def test_k_winners_stops_when_candidates_run_out_and_refuses_bad_k(kwta_impl):
    time = torch.full((2, 3, 4, 4), math.inf)
    time[0, 1, 2, 2] = 0.0
    winners = k_winners(time, torch.zeros_like(time), k=3, radius=1)
    assert int(winners[0].sum()) == 1 and int(winners[1].sum()) == 0
    with pytest.raises(InputError, match=r"k=4 must be an int in \[1, 3\]"):
        k_winners(time, torch.zeros_like(time), k=4, radius=1)
    with pytest.raises(InputError, match="k=0"):
        k_winners(time, torch.zeros_like(time), k=0)
    with pytest.raises(InputError, match="radius=None"):
        k_winners(torch.zeros(2, 3), torch.zeros(2, 3), k=1, radius=1)
    with pytest.raises(InputError, match="same shape"):
        k_winners(time, torch.zeros(2, 3), k=1)
    with pytest.raises(InputError, match="at most 2 spatial"):
        k_winners(torch.zeros(1, 2, 3, 3, 3), torch.zeros(1, 2, 3, 3, 3), k=1)


def test_k_winners_finds_a_winner_below_the_recomputed_bounds(kwta_impl):
    """The first winner's window removes the best spikes of features 1-5, so the table's
    bounds for them are stale: features 1-4 are recomputed first (the largest bounds), then the
    stale bounds of features 5 and 6 in turn are chosen and recomputed; 6 wins (all at t = 0)."""
    time = torch.zeros(1, 7, 1, 9)
    potential = torch.ones(1, 7, 1, 9)
    potential[0, 0, 0, 0] = 10.0  # the first winner
    potential[0, 1:5, 0, 1] = 9.0  # inside its window (radius 1)
    potential[0, 5, 0, 1], potential[0, 5, 0, 8] = 5.0, 4.0
    potential[0, 6, 0, 8] = 4.5
    winners = k_winners(time, potential, k=2, radius=1)
    assert winners.nonzero().tolist() == [[0, 0, 0, 0], [0, 6, 0, 8]]
    expected = k_winners_reference(time.double().numpy(), potential.double().numpy(), 2, 1)
    np.testing.assert_array_equal(winners.numpy(), expected)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4), (0, 5)])
def test_k_winners_of_an_empty_batch_or_map_is_empty(shape, kwta_impl):
    time = torch.zeros(shape)
    winners = k_winners(time, time.clone(), 2, 1 if len(shape) > 2 else None)
    assert winners.shape == shape and winners.dtype == torch.bool and not winners.any()


def test_k_winners_is_the_same_on_several_threads(kwta_impl):
    """The C++ kernel splits the batch across torch's intra-op threads."""
    g = torch.Generator().manual_seed(9)
    time, potential = random_times((24, 6, 9, 9), g, p_silent=0.5, steps=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = k_winners(time, potential, 4, 2)
        torch.set_num_threads(3)
        several = k_winners(time, potential, 4, 2)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, several)
    expected = k_winners_reference(time.numpy(), potential.numpy(), 4, 2)
    np.testing.assert_array_equal(several.numpy(), expected)


def test_k_winners_kernels_agree_on_dtypes_layouts_and_odd_values(cpp_kernels):
    """The C++ kernel against the torch ops on random inputs of every layout, float32 / float64
    / float16 / integer inputs (mixed too), NaN / -inf times, NaN / +-inf potentials and
    non-contiguous tensors."""
    g = torch.Generator().manual_seed(5)
    layouts = [(), (17,), (6, 7), (1, 9)]
    for trial in range(160):
        shape = (1 + trial % 4, 1 + trial % 7, *layouts[trial % 4])
        time, potential = odd_inputs(shape, g, steps=2 + trial % 5, nan_potentials=True)
        time_in, potential_in = [
            (time.float(), potential.float()),
            (time, potential),
            (time.half(), potential.half()),
            (time.float(), potential.clamp(-2, 2).nan_to_num().long()),
        ][trial % 4]
        if trial % 3 == 0 and len(shape) == 4:
            time_in = time_in.transpose(2, 3).contiguous().transpose(2, 3)
        k = 1 + trial % shape[1]
        radius = None if len(shape) == 2 or trial % 5 == 0 else trial % 3
        got = k_winners(time_in, potential_in, k, radius)
        expected = competition._k_winners_torch(time_in, potential_in, k, radius)
        assert torch.equal(got, expected), (trial, shape, k, radius)


def test_pointwise_inhibition_matches_loop():
    g = torch.Generator().manual_seed(3)
    for shape in [(3, 6, 5, 5), (2, 4, 7), (4, 5)]:
        time, potential = random_times(shape, g)
        got = pointwise_inhibition(time, potential)
        np.testing.assert_array_equal(
            got.numpy(), pointwise_reference(time.numpy(), potential.numpy())
        )
        assert int(got.sum(1).max()) <= 1  # one feature per position


def test_first_spike_helpers():
    spikes = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]).unsqueeze(1)
    values = torch.arange(9.0).view(3, 1, 3)
    assert first_spike_times(spikes, start=5).tolist() == [[6.0, 5.0, math.inf]]
    assert value_at_first_spike(values, spikes).tolist() == [[3.0, 1.0, 0.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool, torch.int64])
def test_first_spike_helpers_match_a_loop(dtype):
    g = torch.Generator().manual_seed(5)
    steps, shape = 300, (2, 3, 4)
    spikes = (torch.rand(steps, *shape, generator=g) < 0.004).to(dtype)
    values = torch.randn(steps, *shape, generator=g, dtype=torch.float64)
    expected_time = torch.full(shape, math.inf)
    expected_value = torch.zeros(shape, dtype=torch.float64)
    for t in reversed(range(steps)):  # the earliest spike is written last
        expected_time[spikes[t] != 0] = 7.0 + t
        expected_value[spikes[t] != 0] = values[t][spikes[t] != 0]
    assert torch.isinf(expected_time).any() and torch.isfinite(expected_time).any()
    assert torch.equal(first_spike_times(spikes, start=7).float(), expected_time)
    assert torch.equal(value_at_first_spike(values, spikes), expected_value)


def test_lateral_inhibition_inhibits_every_other_neuron():
    s = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    current = lateral_inhibition(s, 17.0)
    expected = torch.stack([-17.0 * (s[b].sum() - s[b]) for b in range(2)])
    torch.testing.assert_close(current, expected)
    maps = torch.rand(2, 3, 4, 4).round()
    loop = torch.stack([-(maps.sum(1) - maps[:, f]) * 2.0 for f in range(3)], 1)
    torch.testing.assert_close(lateral_inhibition(maps, 2.0, dim=1), loop)


@pytest.mark.parametrize("shape,feature_dims", [((40, 7), 1), ((6, 5, 3, 4, 4), 3)])
def test_one_spike_per_step_keeps_one_spiking_neuron_per_step(shape, feature_dims):
    g = torch.Generator().manual_seed(5)
    spikes = (torch.rand(shape, generator=g) < 0.3).float()
    excess = torch.randn(shape, generator=g)
    for mask in (
        one_spike_per_step(spikes, None, feature_dims, generator=g),
        one_spike_per_step(spikes, excess, feature_dims),
    ):
        assert mask.shape == spikes.shape and mask.dtype == spikes.dtype
        kept = (mask * spikes).flatten(-feature_dims)
        fired = spikes.flatten(-feature_dims).sum(-1)
        torch.testing.assert_close(kept.sum(-1), (fired > 0).float(), rtol=0, atol=0)
        torch.testing.assert_close(mask.flatten(-feature_dims).sum(-1), (fired > 0).float())
    # with the excess: the spiking neuron with the largest excess, per leading index (loop)
    flat_spikes = spikes.flatten(-feature_dims).reshape(-1, kept.shape[-1])
    flat_excess = excess.flatten(-feature_dims).reshape(-1, kept.shape[-1])
    flat_mask = mask.flatten(-feature_dims).reshape(-1, kept.shape[-1])
    for row_spikes, row_excess, row_mask in zip(flat_spikes, flat_excess, flat_mask, strict=True):
        spiking = [i for i in range(len(row_spikes)) if row_spikes[i] != 0]
        expected = torch.zeros_like(row_mask)
        if spiking:
            expected[max(spiking, key=lambda i: float(row_excess[i]))] = 1.0
        torch.testing.assert_close(row_mask, expected, rtol=0, atol=0)


def test_one_spike_per_step_chooses_uniformly_among_the_spikers():
    g = torch.Generator().manual_seed(6)
    spikes = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]).expand(30000, 5)
    wins = one_spike_per_step(spikes, generator=g).sum(0)
    assert wins[1] == wins[4] == 0
    # each spiker wins 1/3 of the steps: 10000 +- 4.5 standard deviations (~82)
    assert (wins[[0, 2, 3]] - 10000).abs().max() < 370, wins


def test_one_spike_per_step_refuses_bad_feature_dims():
    with pytest.raises(InputError, match=r"feature_dims=3 must lie in \[1, 2\]"):
        one_spike_per_step(torch.ones(2, 3), feature_dims=3)
    with pytest.raises(InputError, match=r"excess \(2, 2\) must have the shape"):
        one_spike_per_step(torch.ones(2, 3), torch.ones(2, 2))


def test_n_spikes_raise_theta_by_0_05_n():
    g = torch.Generator().manual_seed(4)
    spikes = (torch.rand(50, 3, 7, generator=g) < 0.3).double()
    theta = adaptive_threshold(torch.zeros(7, dtype=torch.float64), spikes, 0.05)
    n = spikes.sum((0, 1))
    torch.testing.assert_close(theta, 0.05 * n, rtol=0, atol=1e-12)


def test_adaptive_threshold_decay_matches_step_loop():
    g = torch.Generator().manual_seed(5)
    spikes = (torch.rand(30, 2, 2, 3, generator=g) < 0.4).double()
    start = torch.rand(2, 3, generator=g, dtype=torch.float64)
    theta = start.clone()
    for t in range(30):
        theta = theta * 0.9 + 0.05 * spikes[t].sum(0)
    torch.testing.assert_close(adaptive_threshold(start, spikes, 0.05, 0.9), theta)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalised_columns_sum_to_78(dtype):
    g = torch.Generator().manual_seed(6)
    weight = torch.rand(400, 784, generator=g).to(dtype)
    weight[3] = 0.0  # a silent unit stays as it is
    normalize_weights_(weight, 78.0)
    sums = weight.double().sum(1)
    mask = torch.ones(400, dtype=torch.bool)
    mask[3] = False
    tol = dict(rtol=0, atol=1e-6) if dtype == torch.float64 else dict(rtol=1e-6, atol=0)
    torch.testing.assert_close(sums[mask], torch.full((399,), 78.0, dtype=torch.float64), **tol)
    assert torch.equal(weight[3], torch.zeros(784, dtype=dtype))
    conv = torch.rand(5, 2, 3, 3, generator=g, dtype=torch.float64)
    normalize_weights_(conv, 4.0)
    torch.testing.assert_close(conv.sum((1, 2, 3)), torch.full((5,), 4.0, dtype=torch.float64))


def test_doctests():
    result = doctest.testmod(competition, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
