"""DECOLLE against SPECS §1's checks on native snnTorch / SpikingJelly models."""

from __future__ import annotations

import copy

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

import plasticity_plugins
from plasticity_plugins import InputError, StateError
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


def test_a_readout_loaded_from_another_model_is_refused_before_any_state_changes():
    """The readout persists across handle.reset(): one loaded from a model of another width
    raises at the next step, before the step changes anything."""
    source = two_layers(beta=0.8)
    saved_handle = plasticity_plugins.attach(source, DECOLLE(num_classes=N_CLASSES))
    source(spikes_in()[0])
    saved = saved_handle.state_dict()
    torch.manual_seed(2)
    wider = nn.Sequential(nn.Linear(N_IN, N_HID + 2), snn.Leaky(beta=0.8, init_hidden=True))
    wider.add_module("2", nn.Linear(N_HID + 2, N_HID))
    wider.add_module("3", snn.Leaky(beta=0.8, init_hidden=True))
    handle = plasticity_plugins.attach(wider, DECOLLE(num_classes=N_CLASSES))
    handle.load_state_dict(saved)
    handle.reset()
    before = handle.state_dict()
    with pytest.raises(StateError, match=rf"0->1: its readout is \(3, {N_HID}\).*{N_HID + 2}"):
        wider(spikes_in()[0])
    after = handle.state_dict()["rules"]
    for pair, entry in before["rules"].items():
        assert after[pair].keys() == entry.keys()
        assert all(torch.equal(after[pair][key], value) for key, value in entry.items())
    saved_handle.detach()
    handle.detach()


def _torch_learning_signal(spikes, surrogate_input, threshold, is_psi, readout, target, keep):
    """The torch ops' readout work (the rule's fallback), float64: dL/ds times the surrogate."""
    rows, classes = spikes.shape[0], readout.shape[0]
    onehot = F.one_hot(target.repeat(rows // target.shape[0]), classes).double()
    scores = (spikes * keep) @ readout.T
    error = (scores - onehot).clamp(-1.0, 1.0) / (target.shape[0] * classes)
    surrogate = surrogate_input if is_psi else decolle_surrogate(surrogate_input - threshold)
    return (error @ readout) * keep * surrogate


def _readout_problem(rows=12, n=37, classes=5, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(rows, n, generator=g) < 0.3).double()
    membrane = torch.rand(rows, n, generator=g).double() * 2
    readout = (torch.rand(classes, n, generator=g).double() - 0.5) * 2
    target = torch.randint(0, classes, (batch,), generator=g)
    return spikes, membrane, readout, target


@pytest.mark.parametrize("is_psi", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_compiled_learning_signal_matches_the_torch_ops(cpp_kernels, is_psi, dropout):
    """The C++ op ``decolle_learning_signal`` with a given dropout factor against the torch ops
    (both surrogates: DECOLLE's of the membrane, or a given psi), float64."""
    spikes, membrane, readout, target = _readout_problem()
    g = torch.Generator().manual_seed(1)
    keep = (torch.rand(spikes.shape, generator=g) >= dropout).double() / (1 - dropout)
    post = torch.ops.plasticity_plugins_cpu.decolle_learning_signal(
        spikes, membrane, 0.8, is_psi, readout, target, dropout, 1 / (4 * 5), keep
    )
    expected = _torch_learning_signal(spikes, membrane, 0.8, is_psi, readout, target, keep)
    torch.testing.assert_close(post, expected, rtol=1e-12, atol=1e-15)


def test_compiled_dropout_masks_are_seeded_by_torch_and_thread_independent(cpp_kernels):
    """The op's own dropout: the factor it used (read back from where the result vanished)
    reproduces the result through the torch ops; a fraction ``dropout`` of the entries is
    dropped; ``torch.manual_seed`` fixes the masks, the number of threads does not change
    them."""
    spikes, membrane, readout, target = _readout_problem(rows=64, n=301, seed=2)
    op = torch.ops.plasticity_plugins_cpu.decolle_learning_signal
    args = (spikes, membrane, 0.8, False, readout, target, 0.3, 1 / 20)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 3, 1):
            torch.set_num_threads(count)
            torch.manual_seed(7)
            results.append(op(*args))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])
    post = results[0]
    keep = (post != 0).double() / 0.7
    assert abs((post == 0).double().mean().item() - 0.3) < 0.01
    expected = _torch_learning_signal(spikes, membrane, 0.8, False, readout, target, keep)
    torch.testing.assert_close(post, expected, rtol=1e-12, atol=1e-15)
    torch.manual_seed(8)
    assert not torch.equal(op(*args), post)


def test_compiled_votes_match_the_torch_ops(cpp_kernels):
    """``decolle_votes_``: one vote per row for the readout's argmax (the first on ties)."""
    spikes, _, readout, _ = _readout_problem(rows=12, n=37, classes=5, seed=3)
    votes = torch.ones(4, 5, dtype=torch.float64)
    torch.ops.plasticity_plugins_cpu.decolle_votes_(votes, spikes, readout)
    winners = (spikes @ readout.T).argmax(-1).reshape(3, 4)
    expected = torch.ones(4, 5, dtype=torch.float64)
    expected.scatter_add_(1, winners.T, torch.ones(4, 3, dtype=torch.float64))
    torch.testing.assert_close(votes, expected, rtol=0, atol=0)
    tied = torch.ops.plasticity_plugins_cpu.decolle_votes_
    zero = torch.zeros(1, 5, dtype=torch.float64)
    tied(zero, torch.zeros(1, 37, dtype=torch.float64), readout)  # all scores 0: class 0
    assert zero[0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("surrogate", ["decolle", "framework"])
def test_compiled_and_torch_paths_give_the_same_gradients_and_votes(
    cpp_kernels, monkeypatch, surrogate
):
    """Without dropout the rule's C++ readout work and its torch ops give the same weight and
    bias gradients and the same votes (burn-in included)."""

    def run() -> list[torch.Tensor]:
        net = two_layers(beta=0.8)
        rule = DECOLLE(num_classes=N_CLASSES, dropout=0.0, burn_in=3, surrogate=surrogate)
        handle = plasticity_plugins.attach(net, rule)
        for x_t in spikes_in():
            net(x_t)
            handle.backward(target=LABELS)
        votes = [v["votes"] for v in handle.state_dict()["rules"].values()]
        handle.detach()
        return [p.grad for p in net.parameters()] + votes

    compiled = run()
    monkeypatch.setenv("PLASTICITY_PLUGINS_CPU_EXT", "0")
    reference = run()
    assert all(g.abs().sum() > 0 for g in compiled[:4])
    for ours, theirs in zip(compiled, reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
