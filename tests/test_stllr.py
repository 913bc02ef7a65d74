"""S-TLLR against SPECS §2's checks: direct double sums, autograd through one step, delay_ls."""

from __future__ import annotations

import copy
import gc
import itertools
import weakref

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

import plasticity_plugins
from plasticity_plugins import AttachError, InputError, StateError
from plasticity_plugins.networks import single_layer
from plasticity_plugins.rules import STLLR, LocalRule, PairView, RuleState
from plasticity_plugins.rules.stllr import stllr_surrogate

T, B, N_IN, N_OUT = 12, 3, 7, 5


class Recorder(LocalRule):
    def __init__(self) -> None:
        self.x: list[torch.Tensor] = []
        self.psi: list[torch.Tensor] = []

    def step(self, view: PairView, state: RuleState) -> None:
        self.x.append(view.x[0])
        self.psi.append(view.neuron.psi[0])


def leaky_net(dtype=torch.float64, layers=(N_IN, N_OUT)):
    torch.manual_seed(4)
    modules: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(layers):
        linear = nn.Linear(n_in, n_out)
        with torch.no_grad():
            linear.weight.uniform_(0.0, 0.9)
            linear.bias.uniform_(-0.1, 0.2)
        modules += [linear, snn.Leaky(beta=0.7, init_hidden=True)]
    return nn.Sequential(*modules).to(dtype)


def inputs(dtype=torch.float64, steps=T):
    return (torch.rand(steps, B, N_IN, generator=torch.Generator().manual_seed(5)) < 0.5).to(dtype)


def direct_double_sum(x, psi, delta, lp, lq, ap, aq):
    """grad W[i, j] = sum_t sum_b delta_i [ap psi_i sum_{t'<=t} lq^(t-t') x_j(t')
    + aq sum_{t'<t} lp^(t-1-t') psi_i(t') x_j(t)]."""
    steps = x.shape[0]
    grad = np.zeros((psi.shape[2], x.shape[2]))
    for t in range(steps):
        pre_sum = sum(lq ** (t - k) * x[k] for k in range(t + 1))
        post_sum = sum(lp ** (t - 1 - k) * psi[k] for k in range(t)) if t else np.zeros_like(psi[0])
        grad += (delta[t] * ap * psi[t]).T @ pre_sum + (delta[t] * aq * post_sum).T @ x[t]
    return grad


def test_check1_traces_equal_the_direct_double_sum():
    net = leaky_net()
    factors = dict(lambda_post=0.6, lambda_pre=0.8, alpha_post=-0.3, alpha_pre=1.0)
    # snnTorch's spikes are float32 even in a float64 model, so dLoss/ds is float32-exact.
    coefficients = torch.randn(T, B, N_OUT).double()
    recorder = Recorder()
    twin = copy.deepcopy(net)
    observed = plasticity_plugins.attach(twin, recorder)
    with torch.no_grad():
        for x_t in inputs():
            twin(x_t)
    observed.detach()
    handle = plasticity_plugins.attach(net, STLLR(**factors))
    for t, x_t in enumerate(inputs()):
        handle.backward((net(x_t) * coefficients[t]).sum())  # delta[t] = coefficients[t]
    x = torch.stack(recorder.x).numpy()
    psi = torch.stack(recorder.psi).numpy()
    assert psi.max() > 0.1
    expected = direct_double_sum(x, psi, coefficients.numpy(), 0.6, 0.8, 1.0, -0.3)
    np.testing.assert_allclose(net[0].weight.grad.numpy(), expected, rtol=1e-10, atol=1e-10)
    bias = (coefficients.numpy() * psi).sum(axis=(0, 1))
    np.testing.assert_allclose(net[0].bias.grad.numpy(), bias, rtol=1e-10, atol=1e-10)
    handle.detach()


@pytest.mark.parametrize("layers", [(N_IN, N_OUT), (N_IN, 6, 4)])
def test_check2_instantaneous_rule_equals_autograd_through_one_step(layers):
    # snnTorch emits float32 spikes, so a deeper float64 snnTorch model cannot run at all.
    dtype = torch.float64 if len(layers) == 2 else torch.float32
    net = leaky_net(dtype, layers=layers)
    twin = copy.deepcopy(net)
    labels = torch.tensor([0, 1, 2]) % layers[-1]
    handle = plasticity_plugins.attach(net, STLLR(alpha_post=0.0, lambda_pre=0.0, alpha_pre=1.0))
    for x_t in inputs(dtype):
        handle.backward(F.cross_entropy(net(x_t), labels))
    handle.detach()
    for x_t in inputs(dtype):
        for module in twin.modules():
            if isinstance(module, snn.Leaky) and isinstance(module.mem, torch.Tensor):
                module.mem = module.mem.detach()  # autograd through ONE step
        F.cross_entropy(twin(x_t), labels).backward()
    for got, want in zip(net.parameters(), twin.parameters(), strict=True):
        assert want.grad.abs().sum() > 0
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-7)


def test_check3_delay_ls_sums_exactly_the_last_k_steps():
    k = 4
    net = leaky_net()
    twin = copy.deepcopy(net)
    coefficients = torch.randn(T, B, N_OUT, dtype=torch.float64)
    delayed = plasticity_plugins.attach(net, STLLR(delay_ls=k))
    delayed.reset(steps=T)
    plain = plasticity_plugins.attach(twin, STLLR())
    for t, x_t in enumerate(inputs()):
        delayed.backward((net(x_t) * coefficients[t]).sum())
        out = twin(x_t)
        if t >= T - k:
            plain.backward((out * coefficients[t]).sum())
        else:
            plain.backward((out * 0).sum())
        if t == T - k - 1:
            assert net[0].weight.grad.abs().max() == 0  # earlier steps add exactly 0
    assert net[0].weight.grad.abs().sum() > 0
    torch.testing.assert_close(net[0].weight.grad, twin[0].weight.grad, rtol=0, atol=0)
    with pytest.raises(InputError, match="larger than the sequence length"):
        delayed.reset(steps=k - 1)
        net(inputs()[0])
        delayed.backward(net(inputs()[0]).sum())
    delayed.reset()
    net(inputs()[0])
    with pytest.raises(StateError, match="reset\\(steps=T\\)"):
        delayed.backward(net(inputs()[0]).sum())


@pytest.mark.parametrize("signal", ["bp", "dfa"])
def test_same_configuration_same_grads_in_every_framework(signal):
    """Matched neurons, gain-normalised: Norse's weights are W / g and its grads g * others'."""
    from plasticity_plugins.networks import NORSE_INPUT_GAIN

    torch.manual_seed(6)
    weight = torch.rand(N_OUT, N_IN, dtype=torch.float64) * 0.6
    x = inputs()
    coefficients = torch.randn(T, B, N_OUT, dtype=torch.float64)
    grads = {}
    for framework, multistep in [
        ("snntorch", False),
        ("spikingjelly", False),
        ("spikingjelly", True),
        ("norse", False),
    ]:
        net, linear = single_layer(framework, weight, multistep=multistep)
        handle = plasticity_plugins.attach(net, STLLR(psi="linear", signal=signal))
        if multistep:
            handle.backward((net(x) * coefficients).sum())
        elif framework == "norse":
            state = None
            for t, x_t in enumerate(x):
                out, state = net(x_t, state)
                handle.backward((out * coefficients[t]).sum())
        else:
            for t, x_t in enumerate(x):
                handle.backward((net(x_t) * coefficients[t]).sum())
        gain = NORSE_INPUT_GAIN if framework == "norse" else 1.0
        grads[framework, multistep] = linear.weight.grad / gain
        handle.detach()
    reference = grads["snntorch", False]
    assert reference.abs().sum() > 0
    for case, grad in grads.items():
        torch.testing.assert_close(grad, reference, rtol=1e-6, atol=1e-9, msg=str(case))


def test_published_presets_and_surrogates():
    rule = STLLR.published("cli")
    assert (rule.lambda_post, rule.lambda_pre, rule.alpha_post, rule.alpha_pre) == (
        0.2,
        0.75,
        -1.0,
        1.0,
    )
    assert STLLR.published("shd", signal="dfa").signal == "dfa"
    with pytest.raises(ValueError, match="preset"):
        STLLR.published("nope")
    centred = torch.tensor([0.0, 0.01, -0.5])
    torch.testing.assert_close(
        stllr_surrogate("linear", centred), 1 / (100 * centred.abs() + 1) ** 2
    )
    torch.testing.assert_close(stllr_surrogate("conv", centred), torch.tensor([0.3, 0.297, 0.15]))
    s = torch.sigmoid(4 * centred)
    torch.testing.assert_close(stllr_surrogate("sigmoid", centred), 4 * s * (1 - s))


def test_optimizers_clipping_and_schedulers_work_unchanged():
    net = leaky_net(torch.float32, layers=(N_IN, 6, 3))
    handle = plasticity_plugins.attach(net, STLLR.published("cli"))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    before = [p.detach().clone() for p in net.parameters()]
    labels = torch.tensor([0, 1, 2])
    for _ in range(2):
        handle.reset()
        optimizer.zero_grad()
        for x_t in inputs(torch.float32):
            handle.backward(F.cross_entropy(net(x_t), labels))
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.5)
        optimizer.step()
        scheduler.step()
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert scheduler.get_last_lr() == [2.5e-3]
    handle.detach()


def test_each_steps_graph_is_freed_after_backward():
    net = leaky_net()
    handle = plasticity_plugins.attach(net, STLLR())
    refs = []
    for x_t in inputs():
        out = net(x_t)
        refs.append(weakref.ref(out))
        handle.backward(out.sum())
        del out
    gc.collect()
    assert sum(r() is not None for r in refs) == 0  # nothing from earlier steps stays alive
    handle.detach()


def test_bad_input():
    net = leaky_net()
    handle = plasticity_plugins.attach(net, STLLR())
    with pytest.raises(StateError, match="before a forward call"):
        handle.backward(torch.zeros((), requires_grad=True))
    out = net(inputs()[0])
    with pytest.raises(InputError, match="scalar loss"):
        handle.backward(out)
    with pytest.raises(InputError, match="does not require grad"):
        handle.backward(out.detach().sum())
    with pytest.raises(AttachError, match=r"handle.backward\(loss\) at every step"):
        out.sum().backward()
    handle.reset()
    wider = plasticity_plugins.attach(leaky_net(layers=(N_IN, N_OUT + 1)), STLLR())
    x = inputs()[0]
    handle.model(x)
    wider.load_state_dict(handle.state_dict() | {"neurons": wider.state_dict()["neurons"]})
    with pytest.raises(StateError, match=rf"needs post_trace of shape \({B}, {N_OUT + 1}\)"):
        wider.model(x)
    wider.detach()
    with pytest.raises(ValueError, match="delay_ls"):
        STLLR(delay_ls=0)
    with pytest.raises(ValueError, match="lambda_pre"):
        STLLR(lambda_pre=1.5)
    handle.detach()


class ConvRecurrent(nn.Module):
    """Conv2d -> Leaky -> Flatten -> RLeaky (with its recurrent Linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.lif = snn.Leaky(beta=0.7, init_hidden=True)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(3 * 4 * 4, 5)
        self.rlif = snn.RLeaky(beta=0.7, linear_features=5, init_hidden=True)
        with torch.no_grad():
            self.conv.weight.uniform_(0, 0.5)
            self.fc.weight.uniform_(0, 0.3)
            self.rlif.recurrent.weight.uniform_(-0.3, 0.6)

    def forward(self, x):
        return self.rlif(self.fc(self.flat(self.lif(self.conv(x)))))


def test_check2_on_conv_and_recurrent_synapses():
    torch.manual_seed(3)
    net = ConvRecurrent()
    twin = copy.deepcopy(net)
    x = (torch.rand(8, 2, 2, 8, 8) < 0.5).float()
    labels = torch.tensor([1, 3])
    handle = plasticity_plugins.attach(net, STLLR(alpha_post=0.0, lambda_pre=0.0))
    assert handle.pairs == [("conv", "lif"), ("fc", "rlif"), ("rlif.recurrent", "rlif")]
    for x_t in x:
        handle.backward(F.cross_entropy(net(x_t), labels))
    handle.detach()
    for x_t in x:
        for neuron in (twin.lif, twin.rlif):
            if isinstance(neuron.mem, torch.Tensor):
                neuron.mem = neuron.mem.detach()
        if isinstance(twin.rlif.spk, torch.Tensor):
            twin.rlif.spk = twin.rlif.spk.detach()
        F.cross_entropy(twin(x_t), labels).backward()
    for (name, got), want in zip(net.named_parameters(), twin.parameters(), strict=True):
        if name.endswith(("beta", "threshold")):
            continue
        assert want.grad.abs().sum() > 0, name
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-7, msg=name)
