"""The same network in snnTorch, SpikingJelly and Norse gives the same u, s, psi and STDP grads.

Matched neurons (plasticity_plugins.networks): snnTorch Leaky(beta=0.5, reset 'zero',
fast_sigmoid(slope=1)), SpikingJelly LIFNode(tau=2, decay_input=False, SuperSpike(1)), Norse
LIFBoxCell(tau_mem_inv=500, dt=1e-3, 'super') with weights divided by its input gain 0.5.
"""

from __future__ import annotations

import pytest
import torch

import plasticity_plugins
from plasticity_plugins.kernels.competition import one_spike_per_step
from plasticity_plugins.networks import single_layer
from plasticity_plugins.rules import STDP, LocalRule, PairView, RuleState

STEPS, BATCH, N_IN, N_OUT = 25, 3, 12, 6


class Recorder(LocalRule):
    """Keeps every observation (u, s, psi) it is shown."""

    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def step(self, view: PairView, state: RuleState) -> None:
        self.seen.append((view.x, view.neuron.u, view.neuron.s, view.neuron.psi))

    def sequence(self) -> dict[str, torch.Tensor]:
        x, u, s, psi = (torch.cat(parts) for parts in zip(*self.seen, strict=True))
        return {"x": x, "u": u, "s": s, "psi": psi}


def run(framework: str, multistep: bool, weight, inputs, rule, spike_mask=None):
    def attach(model):
        handle = plasticity_plugins.attach(model, rule)
        for adapter in handle.adapters.values():
            adapter.set_spike_mask(spike_mask)
        return handle

    net, linear = single_layer(framework, weight, multistep=multistep)
    handle = attach(net)
    with torch.no_grad():
        if multistep and framework == "spikingjelly":
            net(inputs)
        elif multistep and framework == "norse":
            import norse.torch as norse

            lifted = torch.nn.Sequential(net[0], norse.Lift(net[1]))
            handle.detach()
            handle = attach(lifted)
            lifted(inputs)
        elif framework == "norse":
            state = None
            for x_t in inputs:
                _, state = net(x_t, state)
        else:
            for x_t in inputs:
                net(x_t)
    grad = None if linear.weight.grad is None else linear.weight.grad.clone()
    handle.detach()
    return grad


CASES = [
    ("snntorch", False),
    ("spikingjelly", False),
    ("spikingjelly", True),
    ("norse", False),
    ("norse", True),
]


@pytest.fixture
def problem(device, dtype):
    generator = torch.Generator().manual_seed(3)
    inputs = (torch.rand(STEPS, BATCH, N_IN, generator=generator) < 0.25).to(dtype).to(device)
    weight = (torch.rand(N_OUT, N_IN, generator=generator, dtype=dtype) * 0.3).to(device)
    return weight, inputs


def test_matched_neurons_give_the_same_observations(problem):
    weight, inputs = problem
    seen = {}
    for framework, multistep in CASES:
        recorder = Recorder()
        run(framework, multistep, weight, inputs, recorder)
        seen[framework, multistep] = recorder.sequence()
    reference = seen["snntorch", False]
    assert reference["s"].sum() > 10, "the test needs spikes"
    assert reference["s"].sum() < reference["s"].numel() / 2
    tol = dict(rtol=1e-6, atol=1e-6)
    for case, observed in seen.items():
        for key in ("x", "u", "s", "psi"):
            torch.testing.assert_close(observed[key], reference[key], **tol, msg=f"{case} {key}")


def test_matched_neurons_give_the_same_stdp_grad(problem):
    weight, inputs = problem
    rule = STDP(a_plus=0.01, a_minus=0.012, tau_pre=5, tau_post=7)
    grads = {case: run(*case, weight, inputs, rule) for case in CASES}
    reference = grads["snntorch", False]
    assert reference.abs().sum() > 0
    for case, grad in grads.items():
        torch.testing.assert_close(grad, reference, rtol=1e-6, atol=1e-6, msg=str(case))


def lowest_spiking_neuron(spikes, excess):
    """A deterministic one-spike-per-step mask: the spiking neuron of lowest index."""
    assert excess.shape == spikes.shape
    fired = spikes != 0
    assert bool((excess[fired] >= 0).all()), "spiking neurons are at or over the threshold"
    first = fired.to(torch.uint8).argmax(-1, keepdim=True)
    return torch.zeros_like(spikes).scatter_(-1, first, fired.any(-1, keepdim=True).to(spikes))


@pytest.mark.parametrize("choose", ["lowest", "largest_excess"])
def test_a_spike_mask_function_masks_every_call_and_leaves_the_neuron_alone(problem, choose):
    weight, inputs = problem
    unmasked = Recorder()
    run("snntorch", False, weight, inputs, unmasked)
    reference = unmasked.sequence()
    if choose == "lowest":
        mask_fn = lowest_spiking_neuron
        expected = reference["s"] * lowest_spiking_neuron(reference["s"], reference["u"] - 1.0)
    else:
        mask_fn = one_spike_per_step
        expected = one_spike_per_step(reference["s"], reference["u"] - 1.0)
    assert 0 < expected.sum() < reference["s"].sum(), "the test needs steps with several spikes"
    for case in CASES:
        recorder = Recorder()
        run(*case, weight, inputs, recorder, spike_mask=mask_fn)
        seen = recorder.sequence()
        torch.testing.assert_close(seen["s"], expected, rtol=0, atol=0, msg=str(case))
        # the neuron's own reset follows its unmasked spikes
        torch.testing.assert_close(seen["u"], reference["u"], rtol=1e-6, atol=1e-6, msg=str(case))
