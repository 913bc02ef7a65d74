"""snnTorch adapters against snnTorch itself and a reference loop driven by the NeuronSpec.

Every check compares the adapter with something independent of it: snnTorch's own outputs and
state, autograd through snnTorch's own spike functions, or a hand-written loop that knows only
the adapter's NeuronSpec (plus, for RLeaky, the module's recurrent synapse as the input).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

snn = pytest.importorskip("snntorch")
surrogate = snn.surrogate

from plasticity_plugins.adapters import (  # noqa: E402
    adapter_for,
    is_framework_neuron,
    load_adapters,
)
from plasticity_plugins.adapters.base import NeuronObservation, NeuronSpec  # noqa: E402
from plasticity_plugins.adapters.snntorch import (  # noqa: E402
    ADAPTERS,
    AlphaAdapter,
    LapicqueAdapter,
    LeakyAdapter,
    RLeakyAdapter,
    SynapticAdapter,
    _closed_form,
)
from plasticity_plugins.errors import (  # noqa: E402
    UnsupportedFrameworkVersionError,
    UnsupportedModuleError,
    check_version,
)

B, F, T = 3, 4, 20
NEURONS = ["Leaky", "Synaptic", "RLeaky", "Lapicque", "Alpha"]
EXACT_NEURONS = ["Leaky", "Synaptic", "RLeaky", "Lapicque"]
RESETS = ["subtract", "zero", "none"]
DTYPES = [torch.float32, torch.float64]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.needs_cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]
#: Input scale per neuron, so that some but not all neurons fire.
SCALE = {"Leaky": 1.0, "Synaptic": 0.5, "RLeaky": 1.0, "Lapicque": 3.0, "Alpha": 0.3}


@pytest.fixture(autouse=True)
def _seed():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def make(
    neuron: str,
    reset: str = "subtract",
    init_hidden: bool = False,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    **kw: Any,
) -> Any:
    """A snnTorch neuron of ``F`` features with fixed, representative parameters."""
    common = {"reset_mechanism": reset, "init_hidden": init_hidden, **kw}
    if neuron == "Leaky":
        m = snn.Leaky(beta=0.8, **common)
    elif neuron == "Synaptic":
        m = snn.Synaptic(alpha=0.7, beta=0.8, **common)
    elif neuron == "RLeaky":
        # snnTorch's spikes are float32 whatever the dtype, so its recurrent nn.Linear only works
        # in float32; the one-to-one recurrence (spk * V) works in float64 too.
        if dtype == torch.float32:
            m = snn.RLeaky(beta=0.8, linear_features=F, **common)
            with torch.no_grad():
                m.recurrent.weight.mul_(0.5)
        else:
            m = snn.RLeaky(beta=0.8, all_to_all=False, V=0.6, **common)
    elif neuron == "Lapicque":
        m = snn.Lapicque(R=2.0, C=3.0, time_step=0.5, **common)
    elif neuron == "Alpha":
        m = snn.Alpha(alpha=0.9, beta=0.8, **common)
    else:
        raise ValueError(neuron)
    return m.to(device=device, dtype=dtype)


def inputs(neuron: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Tensor:
    x = (torch.randn(T, B, F, dtype=torch.float64) * 0.6 + 0.35) * SCALE[neuron]
    return x.to(device=device, dtype=dtype)


def step(module: Any, x: Tensor, state: tuple | None) -> tuple[Tensor, tuple | None]:
    """One call as users write it: explicit state for init_hidden=False, none otherwise."""
    if module.init_hidden:
        out = module(x)
        return (out if isinstance(out, Tensor) else out[0]), None
    out = module(x) if state is None else module(x, *state)
    # forward(input_, *state): RLeaky's state is (spk, mem), the others' everything after spk.
    new_state = tuple(out) if isinstance(module, snn.RLeaky) else tuple(out[1:])
    return out[0], new_state


def run(module: Any, xs: Tensor) -> tuple[Tensor, Tensor]:
    """Drive ``module`` over ``xs``; returns its spikes and its ``mem`` per step."""
    state = None
    spikes, mems = [], []
    for x in xs:
        spk, state = step(module, x, state)
        spikes.append(spk)
        mems.append(module.mem.clone())
    return torch.stack(spikes), torch.stack(mems)


def reference(
    spec: NeuronSpec,
    drive: Callable[[int, Tensor], Tensor],
    like: Tensor,
    steps: int = T,
    threshold: Callable[[int, Tensor], Tensor | float] | None = None,
) -> tuple[Tensor, Tensor]:
    """u and s from the spec alone (NeuronSpec form, plus ``reset_after_integration``).

    ``drive(t, s_prev)`` gives the neuron input ``I[t]``; ``threshold(t, s_prev)`` the threshold
    in effect at step t (default: ``spec.threshold``).
    """
    zeros = torch.zeros_like(like, dtype=like.dtype)
    i, u, s = zeros, zeros, zeros
    thr_prev: Tensor | float = spec.threshold
    us, ss = [], []
    for t in range(steps):
        thr = spec.threshold if threshold is None else threshold(t, s)
        current = drive(t, s)
        i = current if spec.syn_decay is None else spec.syn_decay * i + current
        if spec.reset_after_integration:
            w = spec.mem_decay * u + spec.input_gain * i
            if spec.reset == "subtract":
                u = w - thr_prev * s
            elif spec.reset == "zero":
                u = (1 - s) * w + s * spec.reset_value
            else:
                u = w
        else:
            if spec.reset == "subtract":
                v = u - thr_prev * s
            elif spec.reset == "zero":
                v = torch.where(s > 0, torch.full_like(u, spec.reset_value), u)
            else:
                v = u
            u = spec.mem_decay * v + spec.input_gain * i
        s = ((u >= thr) if spec.fire_on_equal else (u > thr)).to(like.dtype)
        thr_prev = thr
        us.append(u)
        ss.append(s)
    return torch.stack(us), torch.stack(ss)


def input_drive(module: Any, xs: Tensor) -> Callable[[int, Tensor], Tensor]:
    """The neuron input: xs, plus RLeaky's recurrent synapse applied to the previous spikes."""
    if not isinstance(module, snn.RLeaky):
        return lambda t, s_prev: xs[t]
    recurrent = copy.deepcopy(module.recurrent)

    def drive(t: int, s_prev: Tensor) -> Tensor:
        with torch.no_grad():
            # snnTorch feeds its float32 spikes to the recurrent layer
            return xs[t] + recurrent(s_prev.float() if xs.dtype == torch.float32 else s_prev)

    return drive


def autograd_psi(module: Any, centred: Tensor) -> Tensor:
    """d spike_grad / dx by autograd through snnTorch's own spike function."""
    v = centred.detach().clone().requires_grad_(True)
    module.spike_grad(v).sum().backward()
    assert v.grad is not None
    return v.grad


def tol(dtype: torch.dtype) -> dict[str, Any]:
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}


def adapted(module: Any) -> tuple[Any, list[NeuronObservation]]:
    cls = adapter_for(module)
    assert cls is not None
    adapter = cls(module)
    observations: list[NeuronObservation] = []
    adapter.install(observations.append)
    return adapter, observations


# ------------------------------------------------------------------------------------------
# dynamics: observation vs snnTorch, spec vs snnTorch
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("init_hidden", [False, True])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("neuron", EXACT_NEURONS)
def test_observation_and_spec_reproduce_snntorch(neuron, reset, init_hidden, dtype, device):
    module = make(neuron, reset, init_hidden, dtype, device)
    xs = inputs(neuron, dtype, device)
    adapter, obs = adapted(module)
    spk, mem = run(module, xs)

    assert len(obs) == T
    s = torch.cat([o.s for o in obs])
    u = torch.cat([o.u for o in obs])
    assert obs[0].s.shape == (1, B, F)
    assert s.dtype == u.dtype == dtype  # snnTorch's spikes are float32; s follows u
    # the observation is the framework's own output and membrane
    assert torch.equal(s, spk.to(dtype))
    assert torch.equal(u, mem)
    assert torch.equal(s, (u > module.threshold).to(dtype))
    assert 0 < s.mean() < 1, "the input should make some, not all, neurons fire"
    # psi is the derivative of the module's own spike function (default atan) at u - thr
    psi = torch.cat([o.psi for o in obs])
    torch.testing.assert_close(psi, autograd_psi(module, u - module.threshold), **tol(dtype))
    # a loop that knows only the spec reproduces u and s
    spec = adapter.spec
    assert isinstance(spec, NeuronSpec) and spec.exact
    assert (spec.framework, spec.neuron, spec.reset, spec.fire_on_equal) == (
        "snntorch",
        neuron,
        reset,
        False,
    )
    u_ref, s_ref = reference(spec, input_drive(module, xs), xs[0])
    torch.testing.assert_close(u, u_ref, **tol(dtype))
    assert torch.equal(s, s_ref)
    adapter.uninstall()


def test_spec_fields():
    leaky = LeakyAdapter(snn.Leaky(beta=0.8)).spec
    assert (leaky.mem_decay, leaky.input_gain, leaky.syn_decay) == (pytest.approx(0.8), 1.0, None)
    assert leaky.reset_after_integration  # snnTorch subtracts the threshold after the decay
    zero = LeakyAdapter(snn.Leaky(beta=0.8, reset_mechanism="zero")).spec
    assert not zero.reset_after_integration  # Leaky's zero reset has the common form
    syn = SynapticAdapter(snn.Synaptic(alpha=0.7, beta=0.8, reset_mechanism="zero")).spec
    assert (syn.syn_decay, syn.mem_decay) == (pytest.approx(0.7), pytest.approx(0.8))
    assert syn.reset_after_integration
    assert RLeakyAdapter(snn.RLeaky(beta=1.7, linear_features=2)).spec.mem_decay == 1.0  # clamp
    assert LeakyAdapter(snn.Leaky(beta=0.5, threshold=0.3)).spec.threshold == pytest.approx(0.3)


def test_lapicque_spec_is_derived_from_r_c_and_time_step():
    spec = LapicqueAdapter(snn.Lapicque(R=2.0, C=3.0, time_step=0.5)).spec
    assert spec.mem_decay == pytest.approx(1 - 0.5 / 6, rel=1e-6)
    assert spec.input_gain == pytest.approx(0.5 / 3, rel=1e-6)
    # beta only: snnTorch sets R = 1, C = dt / log(1 / beta); its Euler step then decays by
    # 1 - dt / (R C) = 1 + log(beta), not by beta
    spec = LapicqueAdapter(snn.Lapicque(beta=0.9, time_step=1.0)).spec
    assert spec.mem_decay == pytest.approx(1 + math.log(0.9), rel=1e-5)
    assert spec.input_gain == pytest.approx(math.log(1 / 0.9), rel=1e-5)


def test_learnable_beta_spec_reads_the_current_value():
    module = snn.Leaky(beta=0.8, learn_beta=True)
    adapter, _ = adapted(module)
    with torch.no_grad():
        module.beta.fill_(0.55)
    spec = adapter.spec
    assert spec.mem_decay == pytest.approx(0.55)
    xs = inputs("Leaky")
    _, mem = run(module, xs)
    u_ref, _ = reference(spec, lambda t, s: xs[t], xs[0])
    torch.testing.assert_close(mem, u_ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("init_hidden", [False, True])
@pytest.mark.parametrize("reset", RESETS)
def test_alpha_observation_and_documented_spec(reset, init_hidden, dtype, device):
    module = make("Alpha", reset, init_hidden, dtype, device)
    xs = inputs("Alpha", dtype, device)
    adapter, obs = adapted(module)
    spk, mem = run(module, xs)
    s, u = torch.cat([o.s for o in obs]), torch.cat([o.u for o in obs])
    assert torch.equal(s, spk.to(dtype)) and torch.equal(u, mem)
    assert torch.equal(s, (u > module.threshold).to(dtype))
    assert 0 < s.mean() < 1
    psi = torch.cat([o.psi for o in obs])
    torch.testing.assert_close(psi, autograd_psi(module, u - module.threshold), **tol(dtype))
    spec = adapter.spec
    assert not spec.exact and spec.reset == reset
    if reset == "none":
        # documented: the spec's form, delayed by one step (u_alpha[t] = u_spec[t - 1])
        u_ref, _ = reference(spec, lambda t, s: xs[t], xs[0])
        torch.testing.assert_close(u[1:], u_ref[:-1], **tol(dtype))
        assert torch.all(u[0] == 0)


# ------------------------------------------------------------------------------------------
# surrogates
# ------------------------------------------------------------------------------------------

SURROGATES: dict[str, tuple[Callable, bool]] = {
    # name: (factory, has a closed form)
    "fast_sigmoid": (lambda: surrogate.fast_sigmoid(slope=5), True),
    "atan": (lambda: surrogate.atan(alpha=3.0), True),
    "sigmoid": (lambda: surrogate.sigmoid(slope=4), True),
    "straight_through_estimator": (surrogate.straight_through_estimator, True),
    "heaviside": (surrogate.heaviside, True),
    "triangular": (lambda: surrogate.triangular(threshold=0.7), True),
    "spike_rate_escape": (lambda: surrogate.spike_rate_escape(beta=2, slope=3), True),
    "SFS": (lambda: surrogate.SFS(slope=5, B=-0.2), True),
    "SSO": (lambda: surrogate.SSO(mean=0.1, variance=0.3), False),
    "custom": (
        lambda: surrogate.custom_surrogate(lambda inp, grad, out: grad * torch.exp(-inp.abs())),
        False,
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_psi_matches_autograd_of_each_surrogate(name, dtype):
    factory, closed = SURROGATES[name]
    module = make("Leaky", dtype=dtype, spike_grad=factory(), threshold=0.9)
    assert (_closed_form(module.spike_grad) is not None) == closed
    adapter, obs = adapted(module)
    adapter.set_threshold_offset(torch.linspace(-0.3, 0.3, F, dtype=dtype))
    xs = inputs("Leaky", dtype)
    run(module, xs)
    u = torch.cat([o.u for o in obs])
    centred = u - (module.threshold + adapter.threshold_offset)
    torch.manual_seed(1)  # SSO samples its sub-threshold gradient
    psi = torch.cat([o.psi for o in obs])
    torch.manual_seed(1)
    expected = torch.stack([autograd_psi(module, c) for c in centred.unbind(0)])
    torch.testing.assert_close(psi, expected, **tol(dtype))


def test_surrogate_disable_gives_zero_psi():
    module = snn.Leaky(beta=0.8, surrogate_disable=True)
    _, obs = adapted(module)
    xs = inputs("Leaky")
    spk, mem = run(module, xs)
    assert torch.equal(torch.cat([o.s for o in obs]), spk)
    assert torch.equal(torch.cat([o.psi for o in obs]), torch.zeros_like(mem))


def test_spike_grad_replaced_after_install_is_followed_and_checked():
    module = snn.Leaky(beta=0.8)
    _, obs = adapted(module)
    module.spike_grad = surrogate.fast_sigmoid(slope=7)
    module(torch.rand(B, F) * 2)
    expected = autograd_psi(module, obs[-1].u[0] - 1.0)
    torch.testing.assert_close(obs[-1].psi[0], expected)
    module.spike_grad = torch.sigmoid  # graded "spikes"
    with pytest.raises(UnsupportedModuleError, match="spike_grad"):
        module(torch.rand(B, F))


def test_sigmoid_closed_form_stays_finite_where_snntorch_overflows():
    module = snn.Leaky(beta=0.8, spike_grad=surrogate.sigmoid(slope=25))
    far = torch.tensor([-10.0, -1.0, 0.0, 0.5])
    closed = _closed_form(module.spike_grad)
    assert closed is not None
    psi = closed(far)
    assert torch.isfinite(psi).all()
    framework = autograd_psi(module, far)
    assert torch.isnan(framework[0])  # exp(250) overflows in float32 inside snnTorch
    torch.testing.assert_close(psi[1:], framework[1:])


def test_membrane_and_psi_are_lazy():
    def counted_leaky(calls: list[int]) -> snn.Leaky:
        module = snn.Leaky(beta=0.8, spike_grad=surrogate.custom_surrogate(lambda i, g, o: g))
        original = module.spike_grad

        def counting(x: Tensor) -> Tensor:
            calls.append(1)
            return original(x)

        module.spike_grad = counting
        return module

    x = torch.rand(B, F)
    plain_calls: list[int] = []
    counted_leaky(plain_calls)(x)
    calls: list[int] = []
    module = counted_leaky(calls)
    _, obs = adapted(module)  # probes the custom spike function once
    before = len(calls)
    module(x)
    n = len(calls)
    assert n - before == len(plain_calls) > 0  # snnTorch's own calls only: no psi yet
    psi = obs[0].psi
    assert len(calls) == n + 1
    assert obs[0].psi is psi and obs[0].u is obs[0].u  # evaluated once, then cached
    assert len(calls) == n + 1


# ------------------------------------------------------------------------------------------
# threshold offset and spike mask
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("neuron", EXACT_NEURONS)
def test_threshold_offset_shifts_firing_as_the_reference_predicts(neuron, reset, device):
    module = make(neuron, reset, init_hidden=True, device=device)
    xs = inputs(neuron, device=device)
    adapter, obs = adapted(module)
    offset = torch.tensor([-0.4, 0.0, 0.3, 0.8], device=device)
    adapter.set_threshold_offset(offset)
    spk, _ = run(module, xs)
    s, u = torch.cat([o.s for o in obs]), torch.cat([o.u for o in obs])
    thr = adapter.spec.threshold + offset
    assert torch.equal(s, spk) and torch.equal(s, (u > thr).float())
    drive = input_drive(module, xs)
    u_ref, s_ref = reference(adapter.spec, drive, xs[0], threshold=lambda t, s: thr)
    torch.testing.assert_close(u, u_ref)
    assert torch.equal(s, s_ref)
    _, s_plain = reference(adapter.spec, drive, xs[0])
    assert not torch.equal(s_ref, s_plain)  # the offset changed which neurons fire
    # the observation's psi uses the shifted threshold
    torch.testing.assert_close(torch.cat([o.psi for o in obs]), autograd_psi(module, u - thr))
    # removing it restores the registered threshold, which the module never lost
    adapter.set_threshold_offset(None)
    module(xs[0])
    module(xs[0])
    assert "threshold" not in module.__dict__ and module.threshold.item() == 1.0


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("neuron", ["Leaky", "Synaptic"])
def test_offset_changed_every_step_resets_exactly_the_neurons_that_fired(neuron, reset, in_place):
    """A homeostatic theta (raised after each spike): the reset of step t-1 must use the
    threshold step t-1 fired with, not the raised one (snnTorch alone would recompute it)."""
    module = make(neuron, reset, init_hidden=True)
    xs = inputs(neuron) * 1.5
    cls = adapter_for(module)
    assert cls is not None
    adapter = cls(module)
    theta = torch.zeros(F)
    observations: list[NeuronObservation] = []

    def on_step(o: NeuronObservation) -> None:
        nonlocal theta
        observations.append(o)
        if in_place:
            theta.add_(0.5 * o.s[0].mean(0))
        else:
            theta = theta + 0.5 * o.s[0].mean(0)
            adapter.set_threshold_offset(theta)

    adapter.install(on_step)
    adapter.set_threshold_offset(theta)
    run(module, xs)
    s = torch.cat([o.s for o in observations])
    u = torch.cat([o.u for o in observations])

    theta_ref = torch.zeros(F)

    def threshold(t: int, s_prev: Tensor) -> Tensor:
        nonlocal theta_ref
        theta_ref = theta_ref + 0.5 * s_prev.mean(0)
        return adapter.spec.threshold + theta_ref

    u_ref, s_ref = reference(adapter.spec, lambda t, s: xs[t], xs[0], threshold=threshold)
    torch.testing.assert_close(u, u_ref)
    assert torch.equal(s, s_ref)
    assert theta.max() > 0.5  # the threshold did move


def test_threshold_offset_with_learnable_threshold():
    module = snn.Leaky(beta=0.8, learn_threshold=True, init_hidden=True)
    param = module.threshold
    adapter, obs = adapted(module)
    adapter.set_threshold_offset(torch.full((F,), 0.2))
    xs = inputs("Leaky")
    out = torch.stack([module(x) for x in xs])
    assert module.threshold is param and "threshold" not in module.__dict__
    assert isinstance(module.threshold, torch.nn.Parameter)
    out.sum().backward()
    assert param.grad is not None and param.grad != 0  # gradients still reach the threshold
    assert torch.equal(torch.cat([o.s for o in obs]), (torch.cat([o.u for o in obs]) > 1.2).float())
    adapter.uninstall()
    assert module.threshold is param and dict(module.named_parameters())["threshold"] is param


@pytest.mark.parametrize("output", [False, True])
@pytest.mark.parametrize("init_hidden", [False, True])
@pytest.mark.parametrize("neuron", NEURONS)
def test_spike_mask_zeroes_exactly_the_masked_outputs(neuron, init_hidden, output):
    if output and not init_hidden:
        pytest.skip("output=True only matters with init_hidden=True")
    module = make(neuron, init_hidden=init_hidden, output=output)
    twin = copy.deepcopy(module)
    xs = inputs(neuron)
    adapter, obs = adapted(module)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    adapter.set_spike_mask(mask)
    recurrent_inputs: list[Tensor] = []
    if neuron == "RLeaky":
        module.recurrent.register_forward_pre_hook(
            lambda m, a: recurrent_inputs.append(a[0].clone())
        )
    spk, mem = run(module, xs)
    assert torch.equal(torch.cat([o.s for o in obs]), spk)
    assert torch.all(spk[..., 1] == 0) and torch.all(spk[..., 3] == 0)
    assert spk.sum() > 0
    if neuron == "RLeaky":
        # the recurrent synapse is called as a module with the previous (masked) spikes
        assert len(recurrent_inputs) == T
        assert torch.equal(recurrent_inputs[0], torch.zeros(B, F))
        assert torch.equal(torch.stack(recurrent_inputs[1:]), spk[:-1])
    else:
        # the neuron's own dynamics (reset included) follow its unmasked spikes
        spk_twin, mem_twin = run(twin, xs)
        assert torch.equal(mem, mem_twin)
        assert torch.equal(spk, spk_twin * mask)


# ------------------------------------------------------------------------------------------
# uninstall, detach_state, state
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init_hidden", [False, True])
@pytest.mark.parametrize("neuron", NEURONS)
def test_uninstall_restores_the_exact_original_behaviour(neuron, init_hidden):
    module = make(neuron, init_hidden=init_hidden)
    twin = copy.deepcopy(module)
    before = dict(module.__dict__)
    xs = inputs(neuron)
    adapter, _ = adapted(module)
    adapter.detach_state = True
    adapter.set_threshold_offset(torch.full((F,), 0.3))
    adapter.set_spike_mask(torch.tensor([0.0, 1.0, 1.0, 1.0]))
    run(module, xs[:5])
    adapter.uninstall()
    assert not module._forward_hooks and not module._forward_pre_hooks
    assert set(module.__dict__) <= set(before) | {"reset"}  # snnTorch's own per-call attribute
    assert module.state_function == before["state_function"]
    assert module._buffers["threshold"] is before["_buffers"]["threshold"]
    module.reset_mem()
    twin.reset_mem()
    spk, mem = run(module, xs)
    spk_twin, mem_twin = run(twin, xs)
    assert torch.equal(spk, spk_twin) and torch.equal(mem, mem_twin)


def test_failed_forward_leaves_no_trace():
    module = snn.Leaky(beta=0.8, init_hidden=True)
    state_function = module.state_function
    adapter, _ = adapted(module)
    adapter.set_threshold_offset(torch.zeros(F))
    with pytest.raises(RuntimeError):
        module(torch.rand(B, F + 1))  # offset of F features vs F + 1 inputs
    assert "threshold" not in module.__dict__ and module.state_function == state_function


@pytest.mark.parametrize("init_hidden", [False, True])
@pytest.mark.parametrize("neuron", NEURONS)
def test_detach_state_cuts_the_graph_between_calls(neuron, init_hidden):
    for detach in (False, True):
        module = make(neuron, "none", init_hidden=init_hidden)
        adapter, _ = adapted(module)
        adapter.detach_state = detach
        x1 = (torch.rand(B, F) + 0.5).requires_grad_(True)
        x2 = torch.rand(B, F, requires_grad=True)
        _, state = step(module, x1, None)
        step(module, x2, state)
        module.mem.sum().backward()
        reached = x1.grad is not None and bool(x1.grad.abs().sum() > 0)
        assert reached != detach, f"detach_state={detach}"


@pytest.mark.parametrize("init_hidden", [False, True])
@pytest.mark.parametrize("neuron", NEURONS)
def test_state_dict_round_trip_and_reset(neuron, init_hidden):
    module = make(neuron, init_hidden=init_hidden)
    fresh = copy.deepcopy(module)
    other = make(neuron, init_hidden=init_hidden)  # another instance of the same class
    xs = inputs(neuron)
    adapter, _ = adapted(module)
    adapter.set_threshold_offset(torch.tensor([0.0, 0.1, 0.2, 0.3]))
    for x in xs[:8]:
        module(x)  # the module keeps its state even when init_hidden=False
    other(xs[0])
    other_mem = other.mem.clone()
    saved = adapter.state_dict()
    assert set(saved) >= set(type(adapter)._state_names)
    first = [module(x) for x in xs[8:]]
    adapter.load_state_dict(saved)
    second = [module(x) for x in xs[8:]]
    for a, b in zip(first, second, strict=True):
        pairs = zip(*((o,) if isinstance(o, Tensor) else o for o in (a, b)), strict=True)
        assert all(torch.equal(p, q) for p, q in pairs)
    # reset(): this module starts afresh, other instances of the class keep their state
    adapter.reset()
    adapter.set_threshold_offset(None)
    spk, mem = run(module, xs)
    spk_fresh, mem_fresh = run(fresh, xs)
    assert torch.equal(spk, spk_fresh) and torch.equal(mem, mem_fresh)
    assert torch.equal(other.mem, other_mem)


def test_state_dict_of_a_fresh_module_round_trips():
    module = snn.Synaptic(alpha=0.5, beta=0.5, init_hidden=True)
    adapter = SynapticAdapter(module)
    saved = adapter.state_dict()
    module(torch.rand(B, F))
    adapter.load_state_dict(saved)
    assert module.mem.shape == (0,) and module.syn.shape == (0,)


# ------------------------------------------------------------------------------------------
# unsupported configurations, registry, versions
# ------------------------------------------------------------------------------------------

UNSUPPORTED: dict[str, tuple[Callable[[], torch.nn.Module], str]] = {
    "leaky_reset_delay": (lambda: snn.Leaky(beta=0.8, reset_delay=False), "reset_delay=False"),
    "synaptic_reset_delay": (
        lambda: snn.Synaptic(alpha=0.5, beta=0.8, reset_delay=False),
        "reset_delay=False",
    ),
    "rleaky_reset_delay": (
        lambda: snn.RLeaky(beta=0.8, linear_features=F, reset_delay=False),
        "reset_delay=False",
    ),
    "inhibition": (lambda: snn.Leaky(beta=0.8, inhibition=True), "inhibition=True"),
    "state_quant": (lambda: snn.Leaky(beta=0.8, state_quant=torch.round), "state_quant"),
    "graded": (lambda: snn.Leaky(beta=0.8, graded_spikes_factor=2.0), "graded_spikes_factor"),
    "learn_graded": (
        lambda: snn.Leaky(beta=0.8, learn_graded_spikes_factor=True),
        "graded_spikes_factor",
    ),
    "per_neuron_beta": (lambda: snn.Leaky(beta=torch.rand(F)), "per-neuron beta"),
    "per_neuron_threshold": (
        lambda: snn.Synaptic(alpha=0.5, beta=0.8, threshold=torch.ones(F)),
        "per-neuron threshold",
    ),
    "broken_surrogate": (lambda: snn.Leaky(beta=0.8, spike_grad=surrogate.LSO()), "spike_grad"),
    "graded_surrogate": (lambda: snn.Leaky(beta=0.8, spike_grad=torch.sigmoid), "spike_grad"),
}


@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_configurations_raise_helpful_errors(case):
    factory, option = UNSUPPORTED[case]
    module = factory()
    before = {k: v for k, v in module.__dict__.items() if k != "_buffers"}
    buffers = dict(module._buffers)
    cls = adapter_for(module)
    assert cls is not None
    with pytest.raises(UnsupportedModuleError, match="Supported") as info:
        cls(module)
    message = str(info.value)
    assert type(module).__name__ in message and option in message
    assert module.__dict__.items() >= before.items() and module._buffers == buffers


def test_reset_mechanism_changed_after_construction_is_refused():
    module = snn.Leaky(beta=0.8)
    module.reset_mechanism = "zero"  # snnTorch keeps _base_sub: the forward still subtracts
    with pytest.raises(UnsupportedModuleError, match="reset_mechanism='zero'"):
        LeakyAdapter(module)


def test_reset_delay_switched_off_after_install_raises_on_the_next_call():
    module = snn.Leaky(beta=0.8)
    adapted(module)
    module.reset_delay = False
    with pytest.raises(UnsupportedModuleError, match="reset_delay=False"):
        module(torch.rand(B, F))


def test_registry_and_neuron_recognition():
    assert load_adapters("snntorch") == ADAPTERS
    for module, cls in [
        (snn.Leaky(beta=0.5), LeakyAdapter),
        (snn.Synaptic(alpha=0.5, beta=0.5), SynapticAdapter),
        (snn.RLeaky(beta=0.5, all_to_all=False), RLeakyAdapter),
        (snn.Lapicque(beta=0.5), LapicqueAdapter),
        (snn.Alpha(alpha=0.6, beta=0.5), AlphaAdapter),
    ]:
        assert adapter_for(module) is cls and is_framework_neuron(module)
        assert cls(module).multistep is False
    delta = snn.DeltaLeaky(beta=0.5)  # a Leaky subclass with other dynamics
    assert adapter_for(delta) is None and is_framework_neuron(delta)
    assert is_framework_neuron(snn.RSynaptic(alpha=0.5, beta=0.5, all_to_all=False))
    assert not is_framework_neuron(snn.RLeaky(beta=0.5, all_to_all=False).recurrent)
    assert not is_framework_neuron(torch.nn.Linear(2, 2))


def test_check_version_range():
    check_version("snntorch", "1.0.0", "1.0", "2")
    check_version("snntorch", "1.9.3", "1.0", "2")
    for bad in ("0.9.4", "2.0.0"):
        with pytest.raises(UnsupportedFrameworkVersionError, match=r">=1.0,<2"):
            check_version("snntorch", bad, "1.0", "2")


def test_spike_mask_refuses_what_is_neither_tensor_nor_function():
    adapter = adapter_for(snn.Leaky(beta=0.5))(snn.Leaky(beta=0.5))
    with pytest.raises(TypeError, match=r"snntorch\.Leaky: a spike mask is a tensor, a function"):
        adapter.set_spike_mask([1.0, 0.0])  # type: ignore[arg-type]
    assert adapter.spike_mask is None
