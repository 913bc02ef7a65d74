"""Traces against closed forms and an explicit loop."""

from __future__ import annotations

import math

import pytest
import torch

from plasticity_plugins.kernels.traces import (
    decay_factor,
    nearest_trace_step,
    trace_sequence,
    trace_step,
)


def test_decay_is_exact_exponential():
    assert decay_factor(20.0) == math.exp(-1 / 20)
    assert decay_factor(5.0, dt=0.5) == math.exp(-0.1)
    with pytest.raises(ValueError, match="tau"):
        decay_factor(0.0)


@pytest.mark.parametrize("kind", ["all_to_all", "nearest"])
def test_trace_sequence_matches_closed_form(kind):
    torch.manual_seed(0)
    spikes = (torch.rand(40, 3, 5, dtype=torch.float64) < 0.2).to(torch.float64)
    decay = decay_factor(7.0)
    got = trace_sequence(spikes, torch.zeros(3, 5, dtype=torch.float64), decay, kind)
    expected = torch.zeros_like(spikes)
    for t in range(40):
        for b in range(3):
            for i in range(5):
                times = [k for k in range(t + 1) if spikes[k, b, i]]
                if kind == "all_to_all":
                    expected[t, b, i] = sum(decay ** (t - k) for k in times)
                elif times:
                    expected[t, b, i] = decay ** (t - times[-1])
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_step_by_step_equals_sequence():
    spikes = (torch.rand(10, 4) < 0.3).float()
    trace = torch.full((4,), 0.5)
    stepped = []
    for t in range(10):
        trace = trace_step(trace, spikes[t], 0.8, "all_to_all")
        stepped.append(trace)
    torch.testing.assert_close(
        torch.stack(stepped), trace_sequence(spikes, torch.full((4,), 0.5), 0.8)
    )


def test_nearest_trace_resets_to_spike_value():
    assert nearest_trace_step(torch.tensor([3.0]), torch.tensor([1.0]), 0.5).item() == 1.0
    with pytest.raises(ValueError, match="trace kind"):
        trace_step(torch.zeros(1), torch.zeros(1), 0.5, "bogus")  # type: ignore[arg-type]
