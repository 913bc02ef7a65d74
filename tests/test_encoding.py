"""Encodings: intensity-to-latency and the DoG input stage (SPECS §5)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

from plasticity_plugins.kernels import encoding
from plasticity_plugins.kernels.encoding import (
    dog_filters,
    dog_kernel,
    dog_preprocess,
    intensity_to_latency,
)


def test_each_latency_step_adds_floor_n_over_t_spikes_in_descending_intensity():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(4, 6, 9, 9, generator=g)
    values[values < 0.5] = 0.0  # about half the pixels are zero
    values[1, :, :2] = values[1, 0, 0, 0]  # ties keep their flat order
    steps = 15
    waves = intensity_to_latency(values, steps)
    assert waves.shape == (steps, *values.shape)
    for b in range(4):
        flat = values[b].flatten()
        n = int((flat != 0).sum())
        per_step = n // steps
        assert per_step > 0
        order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))
        previous = torch.zeros_like(flat, dtype=torch.bool)
        for t in range(steps):
            current = waves[t, b].flatten().bool()
            assert torch.all(current >= previous)  # cumulative waves
            new = (current & ~previous).nonzero().flatten().tolist()
            assert len(new) == per_step
            assert sorted(new) == sorted(order[t * per_step : (t + 1) * per_step])
            previous = current
        assert not waves[:, b].flatten(1)[:, flat == 0].any()  # zero pixels never spike


def test_latency_single_spikes_and_too_few_values():
    values = torch.tensor([[0.9, 0.0, 0.3, 0.6, 0.1, 0.8, 0.2]])
    spikes = intensity_to_latency(values, 3, cumulative=False)[:, 0]
    expected = torch.tensor(
        [[1.0, 0, 0, 0, 0, 1, 0], [0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0, 1]]
    )  # n = 6, bins of 2: (0.9, 0.8), (0.6, 0.3), (0.2, 0.1)
    torch.testing.assert_close(spikes, expected)
    assert spikes.sum(0).max() == 1
    assert intensity_to_latency(torch.tensor([[0.5, 0.2]]), 3).sum() == 0  # n < T: silent
    # n = 7, T = 3: bins of 2, the smallest value never spikes (as SpykeTorch)
    seven = torch.tensor([[0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
    assert intensity_to_latency(seven, 3)[-1, 0].tolist() == [1, 1, 1, 1, 1, 1, 0]


def test_latency_refuses_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        intensity_to_latency(torch.ones(1, 3), 0)
    with pytest.raises(ValueError, match="nonnegative"):
        intensity_to_latency(torch.tensor([[1.0, -0.5]]), 2)
    with pytest.raises(ValueError, match="batch"):
        intensity_to_latency(torch.tensor(1.0), 2)


@pytest.mark.parametrize("size", [3, 7, 13])
@pytest.mark.parametrize("on", [True, False])
def test_dog_kernels_sum_to_zero_with_max_one(size, on):
    sigmas = (size / 9, 2 * size / 9) if on else (2 * size / 9, size / 9)
    kernel = dog_kernel(size, *sigmas)  # float64 by default
    assert kernel.shape == (size, size) and kernel.dtype == torch.float64
    assert abs(float(kernel.sum())) < 1e-6
    assert float(kernel.max()) == 1.0
    # in float32, each of the size^2 values rounds by up to 2^-25 of its magnitude (<= 1)
    single = dog_kernel(size, *sigmas, dtype=torch.float32)
    assert abs(float(single.double().sum())) < size**2 * 2.0**-25
    centre = float(kernel[size // 2, size // 2])
    assert (centre > 0) if on else (centre < 0)
    # the textbook formula, written out
    half = size // 2
    x, y = np.mgrid[-half : half + 1, -half : half + 1]
    s1, s2 = sigmas
    dog = (np.exp(-(x**2 + y**2) / (2 * s1**2)) / s1**2) - (
        np.exp(-(x**2 + y**2) / (2 * s2**2)) / s2**2
    )
    dog = dog - dog.mean()
    np.testing.assert_allclose(kernel.numpy(), dog / dog.max(), rtol=1e-6, atol=1e-7)


def test_dog_filter_bank_is_on_off_pairs_centred():
    bank = dog_filters()
    assert bank.shape == (6, 1, 13, 13)
    torch.testing.assert_close(bank[2, 0, 3:10, 3:10], dog_kernel(7, 7 / 9, 14 / 9).float())
    torch.testing.assert_close(bank[1, 0, 5:8, 5:8], dog_kernel(3, 6 / 9, 3 / 9).float())
    assert bank[0, 0, :5].abs().sum() == 0  # the 3x3 kernel is padded with zeros
    for kernel in dog_filters(dtype=torch.float64)[:, 0]:
        assert abs(float(kernel.sum())) < 1e-6 and float(kernel.max()) == 1.0


def test_dog_preprocess_matches_a_direct_implementation():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 1, 14, 14, generator=g)
    images[:, :, 4:10, 4:10] += 1.0
    images /= images.max()
    got = dog_preprocess(images)
    assert got.shape == (2, 6, 14, 14)
    bank = dog_filters(dtype=torch.float64).numpy()
    pad = 6
    x = np.pad(images.double().numpy() * 255, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    filtered = np.zeros((2, 6, 14, 14))
    for b in range(2):
        for m in range(6):
            for i in range(14):
                for j in range(14):
                    filtered[b, m, i, j] = (x[b, 0, i : i + 13, j : j + 13] * bank[m, 0]).sum()
    filtered[filtered < 50] = 0
    padded = np.pad(filtered, ((0, 0), (0, 0), (8, 8), (8, 8)))
    means = np.zeros_like(filtered)
    for i in range(14):
        for j in range(14):
            means[:, :, i, j] = padded[:, :, i : i + 17, j : j + 17].sum((2, 3)) / 289
    expected = filtered / (means + 1e-12)
    assert (expected > 0).mean() > 0.05  # the thresholds leave something
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)
    spikes = intensity_to_latency(got, 15)
    assert spikes.shape == (15, 2, 6, 14, 14) and spikes[-1].sum() > 0
    assert not math.isnan(float(got.sum()))


def test_doctests():
    result = doctest.testmod(encoding, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
