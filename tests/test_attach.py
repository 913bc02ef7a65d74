"""attach / detach: pair discovery, the round trip, pausing, mappings, state, bad input."""

from __future__ import annotations

import copy
import io
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based import neuron as sj_neuron
from stdp_reference import conv2d_loop_reference, linear_loop_reference
from torch import nn

import plasticity_plugins
from plasticity_plugins import (
    AttachError,
    InputError,
    SequenceResetWarning,
    StateError,
    UnsupportedModuleError,
)
from plasticity_plugins.kernels.synapse import ConvGeometry
from plasticity_plugins.kernels.traces import decay_factor
from plasticity_plugins.networks import matched_lif
from plasticity_plugins.rules import DECOLLE, STDP, STLLR, LocalRule, PairView, RuleState


class ObserveOnly(LocalRule):
    def step(self, view: PairView, state: RuleState) -> None:
        return None


def leaky(**kwargs) -> snn.Leaky:
    return snn.Leaky(beta=0.8, init_hidden=True, **kwargs)


def spikes(*shape, p=0.3, dtype=torch.float32):
    return (torch.rand(*shape) < p).to(dtype)


class OutOfOrder(nn.Module):
    """Layers declared in another order than forward() uses them, with Flatten/Dropout/BN/pool."""

    def __init__(self) -> None:
        super().__init__()
        self.lif2 = leaky()
        self.fc2 = nn.Linear(4 * 3 * 3, 5)
        self.lif1 = leaky()
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.flat = nn.Flatten()

    def forward(self, x):
        h = self.lif1(self.pool(self.bn(self.conv(x))))
        return self.lif2(self.fc2(self.drop(self.flat(h))))


class RecurrentNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.rlif = snn.RLeaky(beta=0.8, linear_features=4, init_hidden=True)

    def forward(self, x):
        return self.rlif(self.fc(x))


def test_sequential_pairs_by_registration_order():
    net = nn.Sequential(nn.Linear(6, 5), leaky(), nn.Linear(5, 3), leaky())
    handle = plasticity_plugins.attach(net, STDP())
    assert handle.pairs == [("0", "1"), ("2", "3")]
    handle.detach()


def test_class_model_declared_out_of_order_needs_and_uses_example_input():
    net = OutOfOrder()
    handle = plasticity_plugins.attach(net, STDP(), example_input=torch.zeros(2, 2, 6, 6))
    assert handle.pairs == [("conv", "lif1"), ("fc2", "lif2")]
    handle.detach()


def test_trace_leaves_model_state_rng_and_modes_untouched():
    net = OutOfOrder().train()
    before = copy.deepcopy(net.state_dict())
    rng = torch.get_rng_state()
    handle = plasticity_plugins.attach(net, STDP(), example_input=torch.ones(2, 2, 6, 6))
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(m.training for m in net.modules())
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    handle.detach()


def test_rleaky_recurrent_layer_is_a_pair():
    handle = plasticity_plugins.attach(RecurrentNet(), STDP(), example_input=torch.zeros(2, 6))
    assert handle.pairs == [("fc", "rlif"), ("rlif.recurrent", "rlif")]
    handle.detach()


def test_recurrent_stdp_uses_previous_spikes_as_pre():
    net = RecurrentNet()
    handle = plasticity_plugins.attach(net, STDP(a_plus=1.0, a_minus=0.5, tau_pre=3, tau_post=4))
    inputs = spikes(8, 2, 6, p=0.6) * 3
    outs = []
    with torch.no_grad():
        for x_t in inputs:
            outs.append(net(x_t).clone())
    post = torch.stack(outs).double()
    # The recurrent synapse sees the previous step's spikes (zeros before the first step).
    pre = torch.cat([torch.zeros_like(post[:1]), post[:-1]])
    expected = linear_loop_reference(
        pre.numpy(), post.numpy(), 1.0, 0.5, decay_factor(3), decay_factor(4), "all_to_all"
    )
    got = net.rlif.recurrent.weight.grad
    assert post.sum() > 0
    np.testing.assert_allclose(-got.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    handle.detach()


def test_round_trip_restores_classes_parameters_and_bptt_gradients():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 5), leaky(), nn.Linear(5, 3), leaky(output=True))
    twin = copy.deepcopy(net)
    classes = [type(m) for m in net.modules()]
    ids = [id(p) for p in net.parameters()]
    inputs = torch.rand(6, 4, 6)

    def bptt_grads(model):
        model.zero_grad()
        for m in model.modules():
            if isinstance(m, snn.Leaky):
                m.reset_mem()
        loss = sum(model(x_t)[0].sum() for x_t in inputs)
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    expected = bptt_grads(twin)
    bptt_grads(net)  # snnTorch adds attributes at the first forward
    attributes = [set(vars(m)) for m in net.modules()]
    observing = plasticity_plugins.attach(net, ObserveOnly())
    for got, want in zip(bptt_grads(net), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)  # hooks change nothing
    observing.detach()
    handle = plasticity_plugins.attach(net, STDP())
    with torch.no_grad():
        net(inputs[0])
    handle.detach()
    assert not plasticity_plugins.is_attached(net)
    assert [type(m) for m in net.modules()] == classes
    assert [id(p) for p in net.parameters()] == ids
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert [set(vars(m)) for m in net.modules()] == attributes
    for got, want in zip(bptt_grads(net), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.optim.SGD(net.parameters(), lr=0.1).step()  # an optimizer step still works


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AvgPool2d(2)])
def test_stdp_routes_post_spikes_through_pooling(pool):
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    net = nn.Sequential(conv, pool, nn.Flatten(), nn.Dropout(0.0), leaky())
    handle = plasticity_plugins.attach(net, STDP(a_plus=1.0, a_minus=0.7, tau_pre=2, tau_post=3))
    inputs = spikes(5, 2, 2, 6, 6, p=0.5) * 2
    outs = []
    with torch.no_grad():
        for x_t in inputs:
            outs.append(net(x_t).reshape(2, 3, 3, 3))
    post_pooled = torch.stack(outs).double()
    # Independent routing: unpool to the argmax (max) or spread evenly (average).
    routed = []
    for t, x_t in enumerate(inputs):
        y = conv(x_t).detach().double()
        if isinstance(pool, nn.MaxPool2d):
            _, idx = F.max_pool2d(y, 2, return_indices=True)
            routed.append(F.max_unpool2d(post_pooled[t], idx, 2, output_size=y.shape[-2:]))
        else:
            routed.append(post_pooled[t].repeat_interleave(2, -1).repeat_interleave(2, -2) / 4)
    geometry = ConvGeometry((1, 1), (1, 1), (1, 1), 1)
    expected = conv2d_loop_reference(
        inputs.double().numpy(),
        torch.stack(routed).numpy(),
        tuple(conv.weight.shape),
        geometry,
        1.0,
        0.7,
        decay_factor(2),
        decay_factor(3),
    )
    assert post_pooled.sum() > 0
    np.testing.assert_allclose(-conv.weight.grad.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    handle.detach()


def _conv_model(framework: str, multistep: bool, conv: nn.Conv2d):
    if framework == "spikingjelly":
        sj_conv = sj_layer.Conv2d(
            2, 3, 3, stride=2, padding=1, bias=False, step_mode="m" if multistep else "s"
        )
        sj_conv.weight = conv.weight
        return nn.Sequential(sj_conv, matched_lif("spikingjelly", multistep)), sj_conv
    return None, conv


@pytest.mark.parametrize(
    "framework,multistep",
    [("snntorch", False), ("spikingjelly", False), ("spikingjelly", True), ("norse", False)],
)
def test_conv2d_stdp_in_every_framework_matches_loop(framework, multistep, device, dtype):
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.uniform_(0, 0.5)
    conv.to(device, dtype)
    inputs = spikes(6, 2, 2, 7, 7, p=0.5, dtype=dtype).to(device)
    outs = []
    if framework == "spikingjelly":
        net, synapse = _conv_model(framework, multistep, conv)
    elif framework == "norse":
        import norse.torch as norse

        net = norse.SequentialState(conv, matched_lif("norse", dtype=dtype, device=device))
        synapse = conv
    else:
        net = nn.Sequential(conv, matched_lif("snntorch")).to(device, dtype)
        synapse = conv
    net.to(device)
    handle = plasticity_plugins.attach(net, STDP(a_plus=0.5, a_minus=0.3, tau_pre=3, tau_post=2))
    with torch.no_grad():
        if multistep:
            outs = list(net(inputs))
        elif framework == "norse":
            state = None
            for x_t in inputs:
                out, state = net(x_t, state)
                outs.append(out)
        else:
            outs = [net(x_t) for x_t in inputs]
    post = torch.stack(outs).double().cpu().numpy()
    assert post.sum() > 0
    expected = conv2d_loop_reference(
        inputs.double().cpu().numpy(),
        post,
        tuple(synapse.weight.shape),
        ConvGeometry((2, 2), (1, 1), (1, 1), 1),
        0.5,
        0.3,
        decay_factor(3),
        decay_factor(2),
    )
    got = -synapse.weight.grad.double().cpu().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    handle.detach()


def test_linear_stdp_matches_loop_device_dtype(device, dtype):
    net = nn.Sequential(nn.Linear(5, 4, bias=False), matched_lif("snntorch")).to(device, dtype)
    with torch.no_grad():
        net[0].weight.uniform_(0, 0.6)
    handle = plasticity_plugins.attach(net, STDP(a_plus=0.2, a_minus=0.1, tau_pre=4, tau_post=6))
    inputs = spikes(15, 3, 5, p=0.4, dtype=dtype).to(device)
    with torch.no_grad():
        post = torch.stack([net(x_t) for x_t in inputs])
    assert net[0].weight.grad.dtype == dtype and net[0].weight.grad.device.type == device
    expected = linear_loop_reference(
        inputs.double().cpu().numpy(),
        post.double().cpu().numpy(),
        0.2,
        0.1,
        decay_factor(4),
        decay_factor(6),
        "all_to_all",
    )
    got = -net[0].weight.grad.double().cpu().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    handle.detach()


def test_paused_leaves_grad_and_traces_untouched():
    net = nn.Sequential(nn.Linear(5, 4), leaky())
    handle = plasticity_plugins.attach(net, STDP())
    with torch.no_grad():
        net(spikes(2, 5, p=0.9) * 3)
        grad = net[0].weight.grad.clone()
        traces = handle.state_dict()["rules"]
        with handle.paused():
            for _ in range(3):
                net(spikes(2, 5, p=0.9) * 3)
    assert torch.equal(net[0].weight.grad, grad)
    for key, value in handle.state_dict()["rules"]["0->1"].items():
        assert torch.equal(value, traces["0->1"][key])
    handle.detach()


def test_mapping_trains_only_matched_layers():
    net = nn.Sequential(nn.Linear(5, 4), leaky(), nn.Linear(4, 3), leaky())
    handle = plasticity_plugins.attach(net, {"2": STDP(a_plus=1.0)})
    assert handle.pairs == [("2", "3")]
    with torch.no_grad():
        for _ in range(5):
            net(torch.ones(2, 5) * 3)
    assert net[0].weight.grad is None
    assert net[2].weight.grad is not None and net[2].weight.grad.abs().sum() > 0
    handle.detach()
    with pytest.raises(AttachError, match="Pairs found"):
        plasticity_plugins.attach(net, {"nothing*": STDP()})


def test_state_dict_mid_sequence_continues_identically():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(5, 4), leaky())
    handle = plasticity_plugins.attach(net, STDP())
    inputs = spikes(10, 2, 5, p=0.6) * 2
    with torch.no_grad():
        for x_t in inputs[:5]:
            net(x_t)
        saved = handle.state_dict()
        grad_mid = net[0].weight.grad.clone()
        for x_t in inputs[5:]:
            net(x_t)
        uninterrupted = net[0].weight.grad.clone()
        handle.reset()
        handle.load_state_dict(saved)
        net[0].weight.grad = grad_mid.clone()
        for x_t in inputs[5:]:
            net(x_t)
    torch.testing.assert_close(net[0].weight.grad, uninterrupted, rtol=0, atol=0)
    handle.detach()


def test_load_state_dict_refuses_foreign_or_malformed_states_and_keeps_its_own():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(5, 4), leaky())
    handle = plasticity_plugins.attach(net, STDP())
    with torch.no_grad():
        for x_t in spikes(3, 2, 5, p=0.6):
            net(x_t)
    own = handle.state_dict()
    assert own["rule_types"] == {"0->1": "STDP"}
    other = nn.Sequential(nn.Linear(5, 4), leaky())
    decolle = plasticity_plugins.attach(other, DECOLLE(num_classes=4))
    other(spikes(2, 5))
    decolle.backward(target=torch.tensor([0, 3]))
    changed_rules = {"0->1": {k: v + 1 for k, v in own["rules"]["0->1"].items()}}
    cases = [
        (None, InputError, "expected handle.state_dict"),
        ({"rules": own["rules"]}, InputError, r"got keys \['rules'\]"),
        ({"rules": {"0->1": {"pre_trace": 1.0}}, "neurons": own["neurons"]}, InputError, "tensors"),
        ({**own, "rules": {"fc->lif": {}}}, AttachError, "does not match this handle's pairs"),
        (decolle.state_dict(), AttachError, "0->1: saved DECOLLE, attached STDP"),
        # the rules load, then the neuron's state lacks its membrane: all is rolled back
        ({"rules": changed_rules, "neurons": {"1": {}}}, StateError, "missing"),
    ]
    for state, error, message in cases:
        with pytest.raises(error, match=message):
            handle.load_state_dict(state)
        after = handle.state_dict()
        assert after.keys() == own.keys()
        for part in ("rules", "neurons"):
            for name, entry in own[part].items():
                assert after[part][name].keys() == entry.keys()
                assert all(torch.equal(after[part][name][k], v) for k, v in entry.items())
    handle.load_state_dict({k: v for k, v in own.items() if k != "rule_types"})  # optional key
    decolle.detach()
    handle.detach()


def test_sgd_lr_one_applies_exactly_dw():
    net = nn.Sequential(nn.Linear(3, 2, bias=False), leaky())
    nn.init.constant_(net[0].weight, 0.2)
    w0 = net[0].weight.detach().clone()
    handle = plasticity_plugins.attach(net, STDP(a_plus=0.1, a_minus=0.05))
    with torch.no_grad():
        for _ in range(4):
            net(torch.ones(1, 3) * 5)
    dw = -net[0].weight.grad.clone()
    torch.optim.SGD(net.parameters(), lr=1.0).step()
    torch.testing.assert_close(net[0].weight.detach(), w0 + dw)
    assert dw.sum() > 0  # causal pairing with a driven neuron potentiates
    handle.detach()


def test_grad_scaler_scales_updates_and_autocast_without_it_is_refused():
    net = nn.Sequential(nn.Linear(3, 2, bias=False), leaky())
    nn.init.constant_(net[0].weight, 0.2)
    twin = copy.deepcopy(net)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    handle = plasticity_plugins.attach(net, STDP(), grad_scaler=scaler)
    plain = plasticity_plugins.attach(twin, STDP())
    with torch.no_grad():
        for _ in range(3):
            net(torch.ones(1, 3) * 5)
            twin(torch.ones(1, 3) * 5)
    torch.testing.assert_close(net[0].weight.grad, twin[0].weight.grad * 1024.0)
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    scaler.scale(torch.zeros(()))  # a BPTT loss elsewhere in the model would be scaled so
    scaler.unscale_(optimizer)
    torch.testing.assert_close(net[0].weight.grad, twin[0].weight.grad)
    handle.detach()
    with (
        pytest.raises(AttachError, match="grad_scaler"),
        torch.no_grad(),
        torch.autocast("cpu", dtype=torch.bfloat16),
    ):
        twin(torch.ones(1, 3) * 5)
    plain.detach()


# --- bad input: a clear error, and state untouched -------------------------------------------


def test_unsupported_neuron_lists_supported_ones():
    net = nn.Sequential(nn.Linear(4, 4), sj_neuron.KLIFNode())
    with pytest.raises(
        UnsupportedModuleError, match=r"KLIFNode.*Supported: spikingjelly: .*LIFNode"
    ):
        plasticity_plugins.attach(net, STDP())
    assert not plasticity_plugins.is_attached(net)


def test_snntorch_reset_delay_false_is_refused():
    net = nn.Sequential(nn.Linear(4, 4), leaky(reset_delay=False))
    with pytest.raises(UnsupportedModuleError, match="reset_delay"):
        plasticity_plugins.attach(net, STDP())
    assert not plasticity_plugins.is_attached(net)
    assert not net[1]._forward_hooks


def test_unsupported_synapse_options_are_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), leaky())
    with pytest.raises(UnsupportedModuleError, match="padding_mode='circular'"):
        plasticity_plugins.attach(net, STDP())


def test_copying_or_pickling_an_attached_model_is_refused_and_harmless():
    """A copy would share the handle's hooks and train the original (its .grad and traces)
    with the copy's inputs: copy, deepcopy and pickle raise until detach(), and leave the
    model, its gradients and the handle's state as they were."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4), leaky())
    handle = plasticity_plugins.attach(net, STDP())
    with torch.no_grad():
        net(spikes(3, 6, p=0.5))
    grad, state = net[0].weight.grad.clone(), handle.state_dict()
    whole_model = {
        "deepcopy": lambda: copy.deepcopy(net),
        "pickle": lambda: pickle.dumps(net),
        "torch.save": lambda: torch.save(net, io.BytesIO()),
    }
    for attempt in whole_model.values():
        with pytest.raises(AttachError, match=r"module '0' \(Linear\).*state_dict\(\)"):
            attempt()
    with pytest.raises(AttachError, match=r"module '1' \(Leaky\)"):
        copy.copy(net[1])
    weights = copy.deepcopy(net.state_dict())  # what the message recommends works
    torch.save(net.state_dict(), io.BytesIO())
    assert torch.equal(net[0].weight.grad, grad)
    after, before = _flat(handle.state_dict()), _flat(state)
    assert len(after) == len(before) > 0
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
    handle.detach()
    twin = copy.deepcopy(net)
    assert not plasticity_plugins.is_attached(twin)
    with torch.no_grad():
        twin(spikes(3, 6, p=0.5))
    assert torch.equal(net[0].weight.grad, grad)  # the copy's forward trains nothing
    assert torch.equal(twin[0].weight, weights["0.weight"])


def _flat(state):
    """The tensors of a nested state dict, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for key in sorted(state, key=str) for t in _flat(state[key])]
    return []


@pytest.mark.parametrize("rule", ["stdp", "decolle", "stllr"])
def test_a_compiled_model_learns_exactly_as_the_uncompiled_one(rule):
    """torch.compile(model) with a handle attached: the hooks run eagerly (graph breaks) and
    every gradient equals the uncompiled run's."""
    x = spikes(4, 3, 8, p=0.5)
    target = torch.tensor([0, 2, 1])

    def train(compiled):
        torch.manual_seed(1)
        net = nn.Sequential(nn.Linear(8, 6), leaky(), nn.Linear(6, 3), leaky())
        make = {
            "stdp": lambda: STDP(),
            "decolle": lambda: DECOLLE(num_classes=3, dropout=0.0),
            "stllr": lambda: STLLR(),
        }[rule]
        handle = plasticity_plugins.attach(net, make())
        forward = torch.compile(net) if compiled else net
        for x_t in x:
            if rule == "stdp":
                with torch.no_grad():
                    forward(x_t)
            elif rule == "decolle":
                forward(x_t)
                handle.backward(target=target)
            else:
                handle.backward(F.cross_entropy(forward(x_t), target))
        return [p.grad for p in net.parameters() if p.grad is not None]

    expected, got = train(False), train(True)
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


class StatefulNet(nn.Module):
    """A synapse and a single-step neuron that keeps its state across calls (Norse's state is
    threaded through here; the other frameworks keep theirs in the module)."""

    def __init__(self, synapse: nn.Module, neuron: nn.Module) -> None:
        super().__init__()
        self.synapse, self.neuron = synapse, neuron
        self.state = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (
            self.neuron(self.synapse(x), self.state)
            if self.state is not None
            else self.neuron(self.synapse(x))
        )
        if isinstance(out, tuple):  # Norse: (spikes, state)
            out, self.state = out
        return out


class KeepViews(LocalRule):
    def step(self, view: PairView, state: RuleState) -> None:
        state.setdefault("views", []).append(view)


@pytest.mark.parametrize("framework", ["snntorch", "spikingjelly", "norse"])
def test_a_single_step_call_gives_time_first_views_of_its_tensors(framework):
    """A single-step call hands its step to the rule without a time axis; the view adds it on
    first access, once: x and s are [1, B, n] views of exactly the call's input and output."""
    net = StatefulNet(nn.Linear(5, 3), matched_lif(framework))
    handle = plasticity_plugins.attach(net, KeepViews())
    x = spikes(4, 5, p=0.5)
    with torch.no_grad():
        out = net(x)
        net(x)
    views = handle._pairs[0].state["views"]
    assert [v.first_step for v in views] == [0, 1]
    view = views[0]
    assert view.steps == 1 and view.neuron.steps == 1 and view.neuron.batch == 4
    assert view.x.shape == (1, 4, 5) and view.x.data_ptr() == x.data_ptr()
    assert view.x is view.x and view.neuron.s is view.neuron.s
    torch.testing.assert_close(view.neuron.s, out.unsqueeze(0).to(view.neuron.s.dtype))
    assert view.neuron.u.shape == view.neuron.psi.shape == (1, 4, 3)
    handle.detach()


def test_learning_without_compiling_does_not_import_dynamo():
    """The hooks' compile-time copies are made when dynamo traces them: a model that is never
    compiled does not pay torch._dynamo's import (~2 s) for them."""
    script = (
        "import sys, torch, snntorch, plasticity_plugins\n"
        "from plasticity_plugins.adapters import norse, snntorch as a, spikingjelly\n"
        "from plasticity_plugins.rules import STDP\n"
        "net = torch.nn.Sequential(torch.nn.Linear(4, 3), snntorch.Leaky(0.9, init_hidden=True))\n"
        "handle = plasticity_plugins.attach(net, STDP())\n"
        "with torch.no_grad():\n"
        "    net(torch.ones(2, 4))\n"
        "assert net[0].weight.grad is not None\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_attaching_twice_is_refused():
    net = nn.Sequential(nn.Linear(4, 4), leaky())
    handle = plasticity_plugins.attach(net, STDP())
    with pytest.raises(AttachError, match="already attached"):
        plasticity_plugins.attach(net, STDP())
    with pytest.raises(AttachError, match="already have rules"):
        plasticity_plugins.attach(nn.Sequential(net), STDP())
    handle.detach()
    plasticity_plugins.attach(net, STDP()).detach()


def test_model_without_pairs_is_refused():
    with pytest.raises(AttachError, match="no \\(synapse, neuron\\) pair"):
        plasticity_plugins.attach(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), STDP())
    with pytest.raises(AttachError, match="Pairs found: none"):
        plasticity_plugins.attach(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), leaky()), STDP())


def test_wrong_rank_and_nan_input_are_refused_without_touching_state():
    net = nn.Sequential(nn.Linear(4, 3), leaky())
    handle = plasticity_plugins.attach(net, STDP(a_plus=1.0))
    with torch.no_grad():
        net(torch.ones(2, 4) * 3)
        grad = net[0].weight.grad.clone()
        state = handle.state_dict()
        with pytest.raises(
            InputError, match=r"input of shape \(5, 2, 4\) has rank 3.*\[B, \*features\]"
        ):
            net(torch.ones(5, 2, 4))
        nan_input = torch.ones(2, 4)
        nan_input[0, 1] = float("nan")
        with pytest.raises(InputError, match="NaN or inf"):
            net(nan_input)
        with pytest.raises(InputError, match="float64"):
            net(torch.ones(2, 4, dtype=torch.float64))
    assert torch.equal(net[0].weight.grad, grad)
    for key, value in handle.state_dict()["neurons"]["1"].items():
        assert torch.equal(value, state["neurons"]["1"][key])
    handle.detach()


def test_steps_of_a_sequence_are_checked_for_nan_once_and_a_nan_step_is_refused(monkeypatch):
    """Steps sliced from one sequence tensor are covered by one check of the sequence (per
    version: an in-place write is seen); a NaN at a later step is still refused at that step,
    with the earlier steps' update and the neuron state untouched."""
    attach_module = __import__("plasticity_plugins.attach", fromlist=["_all_finite"])
    checks = []
    original = attach_module._all_finite
    monkeypatch.setattr(attach_module, "_all_finite", lambda x: checks.append(x) or original(x))
    net = nn.Sequential(nn.Linear(4, 3), leaky())
    handle = plasticity_plugins.attach(net, STDP(a_plus=1.0))
    sequence = torch.ones(6, 2, 4) * 3
    with torch.no_grad():
        for x_t in sequence:
            net(x_t)
        assert len(checks) == 1 and checks[0] is sequence
        sequence[4, 1, 2] = float("inf")  # a new version of the sequence: checked again
        for x_t in sequence[:4]:
            net(x_t)
        grad = net[0].weight.grad.clone()
        state = handle.state_dict()
        with pytest.raises(InputError, match="NaN or inf"):
            net(sequence[4])
    assert torch.equal(net[0].weight.grad, grad)
    for key, value in handle.state_dict()["neurons"]["1"].items():
        assert torch.equal(value, state["neurons"]["1"][key])
    handle.detach()


@pytest.mark.parametrize(
    ("framework", "multistep"),
    [("snntorch", False), ("spikingjelly", False), ("spikingjelly", True), ("norse", False)],
)
def test_a_neuron_reset_outside_the_handle_warns_once(framework, multistep):
    """The framework's own reset (snnTorch reset_mem, SpikingJelly reset_net, Norse state=None)
    restarts the neuron but not the rules' traces: one SequenceResetWarning per neuron. Steps
    that continue (also after handle.reset() or a loaded state) do not warn."""
    import norse.torch as norse
    from spikingjelly.activation_based import functional

    torch.manual_seed(0)
    synapse = nn.Linear(5, 4)
    neuron = matched_lif(framework, multistep)
    net = (
        norse.SequentialState(synapse, neuron)
        if framework == "norse"
        else nn.Sequential(synapse, neuron)
    )
    handle = plasticity_plugins.attach(net, STDP())
    x = spikes(2, 3, 2, 5, p=0.5)  # two sequences of three steps

    def sequence(steps, state=None, framework_reset=False):
        if framework_reset and framework == "snntorch":
            neuron.reset_mem()
        elif framework_reset and framework == "spikingjelly":
            functional.reset_net(net)
        with torch.no_grad():
            if multistep:
                net(steps)
            for x_t in [] if multistep else steps:
                if framework == "norse":
                    _, state = net(x_t, state)  # state=None: Norse's initial state
                else:
                    net(x_t)
        return state

    with warnings.catch_warnings():
        warnings.simplefilter("error", SequenceResetWarning)
        handle.reset()
        state = sequence(x[0], framework_reset=True)
        state = sequence(x[1], state)  # continues
        saved = handle.state_dict()
        handle.reset()
        sequence(x[1], framework_reset=True)
        handle.load_state_dict(saved)
        sequence(x[1], state if framework == "norse" else None)
    with pytest.warns(SequenceResetWarning, match=r"1: the neuron restarted.*handle.reset\(\)"):
        sequence(x[0], framework_reset=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SequenceResetWarning)
        sequence(x[1], framework_reset=True)  # once per neuron
    handle.detach()


def test_batch_size_change_without_reset_is_refused():
    net = nn.Sequential(nn.Linear(4, 3), leaky())
    handle = plasticity_plugins.attach(net, STDP())
    with torch.no_grad():
        net(torch.ones(2, 4))
        net[1].reset_mem()  # the framework's own reset leaves the rule's traces as they were
        with (
            pytest.warns(SequenceResetWarning, match="'1'|1: the neuron restarted"),
            pytest.raises(StateError, match=r"handle.reset\(\)"),
        ):
            net(torch.ones(3, 4))
        handle.reset()
        net(torch.ones(3, 4))
    handle.detach()


def test_bad_rule_arguments():
    with pytest.raises(ValueError, match="tau_pre"):
        STDP(tau_pre=0)
    with pytest.raises(TypeError, match="LocalRule"):
        plasticity_plugins.attach(nn.Sequential(nn.Linear(2, 2), leaky()), "stdp")  # type: ignore[arg-type]


def test_rules_project_weights_after_each_step_of_the_handed_optimizer():
    class Clip(STDP):
        def after_optimizer_step(self, synapse, state):
            synapse.weight.clamp_(0.0, 0.1)

    net = nn.Sequential(nn.Linear(3, 2, bias=False), leaky())
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    handle = plasticity_plugins.attach(net, Clip(a_plus=1.0), optimizer=optimizer)
    nn.init.constant_(net[0].weight, 0.5)
    with torch.no_grad():
        for _ in range(3):
            net(torch.ones(1, 3) * 5)
    optimizer.step()
    assert net[0].weight.max() <= 0.1 and net[0].weight.min() >= 0.0
    handle.detach()
    nn.init.constant_(net[0].weight, 0.5)
    optimizer.step()  # detached: no projection any more
    assert net[0].weight.max() > 0.1
