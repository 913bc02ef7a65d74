"""DECOLLE against SPECS §1's checks on native snnTorch / SpikingJelly models."""

from __future__ import annotations

import copy

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

import plasticity_plugins
from plasticity_plugins import InputError
from plasticity_plugins.kernels.traces import filtered_input_step
from plasticity_plugins.rules import DECOLLE, LocalRule, PairView, RuleState
from plasticity_plugins.rules.decolle import decolle_surrogate

T, B, N_IN, N_HID, N_CLASSES = 10, 4, 8, 6, 3


def test_check1_eligibility_of_one_spike():
    a, b = 0.97, 0.92  # DECOLLE's alpha (membrane) and beta (synaptic trace)
    q, p, trace = None, torch.zeros(1, dtype=torch.float64), []
    for t in range(2000):
        x = torch.tensor([1.0 if t == 0 else 0.0], dtype=torch.float64)
        q, p = filtered_input_step(
            q, p, x, mem_decay=a, syn_decay=b, mem_gain=1 - a, syn_gain=1 - b, delayed=True
        )
        trace.append(p.item())
    closed = [(1 - a) * (1 - b) * (a**t - b**t) / (a - b) for t in range(2000)]
    assert max(abs(u - v) for u, v in zip(trace, closed, strict=True)) < 1e-15
    assert trace.index(max(trace)) == 19 and max(trace) == pytest.approx(0.017065, abs=5e-7)
    assert sum(trace) == pytest.approx(1.0, abs=1e-12)  # 0.97^2000: the tail is negligible


def test_check1_native_synaptic_neuron_eligibility_is_its_own_response():
    """For snnTorch Synaptic(alpha, beta) P is the membrane's response to a unit input spike."""
    alpha, beta = 0.9, 0.8
    q, p = None, torch.zeros(1)
    neuron = snn.Synaptic(alpha=alpha, beta=beta, threshold=1e9, init_hidden=True, output=True)
    for t in range(30):
        x = torch.tensor([[1.0 if t == 0 else 0.0]])
        q, p = filtered_input_step(q, p, x[0], mem_decay=beta, syn_decay=alpha)
        _, _, mem = neuron(x)
        assert p.item() == pytest.approx(mem.item(), abs=1e-6)
        assert p.item() == pytest.approx(
            (alpha ** (t + 1) - beta ** (t + 1)) / (alpha - beta), abs=1e-6
        )


def test_check4_surrogate_values():
    torch.testing.assert_close(
        decolle_surrogate(torch.tensor([0.0, 0.1, -0.1])), torch.tensor([1.0, 0.25, 0.25])
    )


def two_layers(neuron_cls=snn.Leaky, **kwargs) -> nn.Sequential:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Linear(N_IN, N_HID),
        neuron_cls(init_hidden=True, **kwargs),
        nn.Linear(N_HID, N_HID),
        neuron_cls(init_hidden=True, **kwargs),
    )
    for layer in (net[0], net[2]):
        with torch.no_grad():
            layer.weight.uniform_(0, 0.7)
    return net


def spikes_in(steps=T):
    return (torch.rand(steps, B, N_IN, generator=torch.Generator().manual_seed(3)) < 0.5).float()


LABELS = torch.tensor([0, 1, 2, 1])


def test_check2_locality_and_fixed_readouts():
    net = two_layers(beta=0.8)
    handle = plasticity_plugins.attach(net, {"0": DECOLLE(num_classes=N_CLASSES, dropout=0.0)})
    for x_t in spikes_in():
        net(x_t)
        handle.backward(target=LABELS)
    assert net[0].weight.grad.abs().sum() > 0
    assert net[2].weight.grad is None  # another layer's gradient stays exactly untouched
    readout = handle.state_dict()["rules"]["0->1"]["readout"].clone()
    torch.optim.SGD(net.parameters(), lr=0.5).step()
    handle.reset()
    for x_t in spikes_in(3):
        net(x_t)
        handle.backward(target=LABELS)
    assert torch.equal(handle.state_dict()["rules"]["0->1"]["readout"], readout)
    handle.detach()


class Capture(LocalRule):
    """Records x, u and s of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def step(self, view: PairView, state: RuleState) -> None:
        self.calls.append((view.x[0], view.neuron.u[0], view.neuron.s[0]))


@pytest.mark.parametrize(
    "neuron_cls,kwargs,syn",
    [(snn.Leaky, {"beta": 0.8}, None), (snn.Synaptic, {"alpha": 0.7, "beta": 0.8}, 0.7)],
)
def test_check3_rule_equals_autograd_of_the_three_factor_model(neuron_cls, kwargs, syn):
    """A dense layer: autograd through ``U = W P + b`` with a surrogate equals the rule."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(N_IN, N_HID), neuron_cls(init_hidden=True, **kwargs))
    with torch.no_grad():
        net[0].weight.uniform_(0, 0.7)
    twin = copy.deepcopy(net)
    capture = Capture()
    observer = plasticity_plugins.attach(twin, capture)
    with torch.no_grad():
        for x_t in spikes_in():
            twin(x_t)
    observer.detach()
    rule = DECOLLE(num_classes=N_CLASSES, dropout=0.0, burn_in=2)
    handle = plasticity_plugins.attach(net, rule)
    for x_t in spikes_in():
        net(x_t)
        handle.backward(target=LABELS)
    readout = handle.state_dict()["rules"]["0->1"]["readout"]
    handle.detach()

    # Independent reference: DECOLLE's model written out with autograd.
    weight = twin[0].weight.detach().clone().requires_grad_(True)
    bias = twin[0].bias.detach().clone().requires_grad_(True)

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, centred):
            ctx.save_for_backward(centred)
            return (centred > 0).to(centred.dtype)

        @staticmethod
        def backward(ctx, grad):
            (centred,) = ctx.saved_tensors
            return grad / (10 * centred.abs() + 1) ** 2

    q = torch.zeros(B, N_IN) if syn else None
    p = torch.zeros(B, N_IN)
    total = 0.0
    onehot = F.one_hot(LABELS, N_CLASSES).float()
    for t, (x_t, u_t, _) in enumerate(capture.calls):
        if syn is None:
            p = 0.8 * p + x_t
        else:
            q = syn * q + x_t
            p = 0.8 * p + q
        u_hat = p @ weight.T + bias
        # same value as the framework's u, the gradient of U = W P + b
        centred = (u_hat - (u_hat - u_t).detach()) - 1.0
        if t >= 2:
            total = total + F.smooth_l1_loss(Spike.apply(centred) @ readout.T, onehot)
    total.backward()
    torch.testing.assert_close(net[0].weight.grad, weight.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(net[0].bias.grad, bias.grad, rtol=1e-5, atol=1e-7)


def test_per_layer_predictions_majority_vote_and_burn_in():
    net = two_layers(beta=0.8)
    handle = plasticity_plugins.attach(net, DECOLLE(num_classes=N_CLASSES, burn_in=T))
    with torch.no_grad():
        for x_t in spikes_in():
            net(x_t)
    assert handle.predictions() == {}  # everything was burn-in
    handle.detach()
    handle = plasticity_plugins.attach(net, DECOLLE(num_classes=N_CLASSES))
    with torch.no_grad():
        for x_t in spikes_in():
            net(x_t)
    predictions = handle.predictions()
    assert set(predictions) == {"0->1", "2->3"}
    for name, prediction in predictions.items():
        votes = handle.state_dict()["rules"][name]["votes"]
        assert votes.sum(-1).eq(T).all() and torch.equal(prediction, votes.argmax(-1))
    handle.detach()


def test_state_saved_mid_sequence_continues_identically():
    net = two_layers(beta=0.8)
    handle = plasticity_plugins.attach(net, DECOLLE(num_classes=N_CLASSES, dropout=0.0))
    x = spikes_in()
    for x_t in x[:4]:
        net(x_t)
        handle.backward(target=LABELS)
    saved = handle.state_dict()
    grads = [p.grad.clone() for p in (net[0].weight, net[2].weight)]
    for x_t in x[4:]:
        net(x_t)
        handle.backward(target=LABELS)
    uninterrupted = [p.grad.clone() for p in (net[0].weight, net[2].weight)]
    handle.reset()
    handle.load_state_dict(saved)
    net[0].weight.grad, net[2].weight.grad = grads[0].clone(), grads[1].clone()
    for x_t in x[4:]:
        net(x_t)
        handle.backward(target=LABELS)
    for p, want in zip((net[0].weight, net[2].weight), uninterrupted, strict=True):
        torch.testing.assert_close(p.grad, want, rtol=0, atol=0)
    handle.detach()


def test_bad_targets():
    net = two_layers(beta=0.8)
    handle = plasticity_plugins.attach(net, DECOLLE(num_classes=N_CLASSES))
    net(spikes_in()[0])
    with pytest.raises(InputError, match=r"shape \(4,\)"):
        handle.backward(target=torch.zeros(4, N_CLASSES))
    with pytest.raises(InputError, match="labels must lie in"):
        handle.backward(target=torch.tensor([0, 1, 2, 7]))
    with pytest.raises(InputError, match="target="):
        handle.backward()
    handle.detach()
