"""Tests of the SpikingJelly adapter against the real framework (no mocks).

Every check compares the adapter with something independent of it: the module's own output and
membrane, SpikingJelly's own autograd (fused kernels and surrogate modules), or a reference loop
written here that is driven only by the adapter's :class:`NeuronSpec`.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

pytest.importorskip("spikingjelly")

from spikingjelly.activation_based import neuron, surrogate

from plasticity_plugins.adapters import (
    NeuronObservation,
    NeuronSpec,
    adapter_for,
    is_framework_neuron,
    surrogate_by_autograd,
)
from plasticity_plugins.adapters import spikingjelly as sj_adapter
from plasticity_plugins.errors import (
    UnsupportedFrameworkVersionError,
    UnsupportedModuleError,
    check_version,
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.needs_cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]
DTYPES = [torch.float32, torch.float64]
MODES = ["s", "m"]
T, B, N = 20, 3, 6

# (id, class, kwargs): every supported neuron family and reset kind.
CONFIGS: list[tuple[str, type, dict[str, Any]]] = [
    ("if-hard", neuron.IFNode, {"v_reset": 0.0}),
    ("if-hard-neg", neuron.IFNode, {"v_reset": -0.25, "detach_reset": True}),
    ("if-soft", neuron.IFNode, {"v_reset": None}),
    ("lif-decay-hard", neuron.LIFNode, {"tau": 2.0, "decay_input": True, "v_reset": 0.0}),
    ("lif-decay-soft", neuron.LIFNode, {"tau": 3.0, "decay_input": True, "v_reset": None}),
    ("lif-nodecay-hard", neuron.LIFNode, {"tau": 2.5, "decay_input": False, "v_reset": 0.0}),
    (
        "lif-nodecay-soft",
        neuron.LIFNode,
        {"tau": 4.0, "decay_input": False, "v_reset": None, "detach_reset": True},
    ),
    (
        "lif-matched",
        neuron.LIFNode,
        {
            "tau": 2.0,
            "decay_input": False,
            "v_reset": 0.0,
            "surrogate_function": surrogate.SuperSpike(alpha=1.0),
        },
    ),
    ("plif-decay-hard", neuron.ParametricLIFNode, {"init_tau": 2.0, "v_reset": 0.0}),
    (
        "plif-nodecay-soft",
        neuron.ParametricLIFNode,
        {"init_tau": 3.0, "decay_input": False, "v_reset": None},
    ),
]
CONFIG_IDS = [c[0] for c in CONFIGS]


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def make(cls: type, kwargs: dict[str, Any], mode: str, dtype: torch.dtype, device: str):
    module = cls(step_mode=mode, **copy.deepcopy(kwargs))
    return module.to(device=device, dtype=dtype)


def inputs(steps: int, dtype: torch.dtype, device: str, scale: float = 1.6) -> torch.Tensor:
    """Random input ``[T, B, N]`` that makes neurons fire sometimes, not always."""
    return (torch.rand(steps, B, N, dtype=torch.float64) * scale).to(device=device, dtype=dtype)


def run(module: torch.nn.Module, x_seq: torch.Tensor, mode: str) -> torch.Tensor:
    """Feed ``x_seq`` ([T, B, ...]) step by step (``"s"``) or in one call (``"m"``)."""
    if mode == "m":
        return module(x_seq)
    return torch.stack([module(x) for x in x_seq])


def observed(records: list[NeuronObservation]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate the observations of several calls along time."""
    s = torch.cat([o.s for o in records])
    u = torch.cat([o.u for o in records])
    psi = torch.cat([o.psi for o in records])
    return s, u, psi


def spec_reference(
    spec: NeuronSpec,
    x_seq: torch.Tensor,
    threshold: float | torch.Tensor | None = None,
    drive: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The NeuronSpec dynamics, written out (``drive``: an extra constant input, for contrast)."""
    thr = spec.threshold if threshold is None else threshold
    v = torch.full_like(x_seq[0], spec.reset_value if spec.reset == "zero" else 0.0)
    us, ss = [], []
    for x in x_seq:
        u = spec.rest + spec.mem_decay * (v - spec.rest) + spec.input_gain * x + drive
        s = (u >= thr) if spec.fire_on_equal else (u > thr)
        s = s.to(x.dtype)
        if spec.reset == "zero":
            v = torch.where(s > 0, torch.full_like(u, spec.reset_value), u)
        elif spec.reset == "subtract":
            v = u - s * thr
        else:
            v = u
        us.append(u)
        ss.append(s)
    return torch.stack(ss), torch.stack(us)


def post_reset(u: torch.Tensor, s: torch.Tensor, module: Any) -> torch.Tensor:
    """SpikingJelly's membrane after the step, from the observed u and s (its reset rule)."""
    if module.v_reset is None:
        return u - s * module.v_threshold
    return s * module.v_reset + (1.0 - s) * u


def tolerances(dtype: torch.dtype) -> dict[str, Any]:
    return (
        {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    )


# --------------------------------------------------------------------------------- dynamics


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "cls", "kwargs"), CONFIGS, ids=CONFIG_IDS)
def test_observation_matches_framework_and_spec(name, cls, kwargs, mode, dtype, device):
    module = make(cls, kwargs, mode, dtype, device)
    twin = copy.deepcopy(module)  # never adapted; records its own membrane
    twin.store_v_seq = mode == "m"
    adapter = adapter_for(module)(module)
    assert adapter.multistep == (mode == "m")
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    x_seq = inputs(T, dtype, device)

    if mode == "s":
        outs, v_after = [], []
        for x in x_seq:
            outs.append(module(x))
            v_after.append(module.v.detach().clone())
            twin(x)
        out = torch.stack(outs)
        v_framework = torch.stack(v_after)
    else:
        out = module(x_seq)
        twin(x_seq)
        v_framework = twin.v_seq.detach()

    s, u, psi = observed(records)
    assert len(records) == (T if mode == "s" else 1)
    assert s.shape == u.shape == psi.shape == (T, B, N)
    assert 0.0 < float(s.mean()) < 1.0  # the test exercises both branches
    torch.testing.assert_close(s, out.detach(), rtol=0, atol=0)
    # The framework's own membrane after each step is the reset of the observed u.
    exact = {"rtol": 0.0, "atol": 0.0} if device == "cpu" else tolerances(dtype)
    torch.testing.assert_close(post_reset(u, s, module), v_framework.to(dtype), **exact)
    torch.testing.assert_close((u >= module.v_threshold).to(dtype), s, rtol=0, atol=0)

    # A loop driven only by the spec reproduces u and s.
    spec = adapter.spec
    assert spec.framework == "spikingjelly" and spec.neuron == cls.__name__
    assert spec.fire_on_equal is True and spec.syn_decay is None
    assert spec.reset == ("subtract" if module.v_reset is None else "zero")
    s_ref, u_ref = spec_reference(spec, x_seq)  # (leaky neurons here: v_reset 0 or None)
    torch.testing.assert_close(s_ref, s, rtol=0, atol=0)
    torch.testing.assert_close(u_ref, u, **tolerances(dtype))

    # psi is the framework's own surrogate derivative at u - threshold.
    expected = surrogate_by_autograd(module.surrogate_function, u - module.v_threshold)
    torch.testing.assert_close(psi, expected, **tolerances(dtype))
    adapter.uninstall()


def test_if_hard_reset_nonzero_value_is_exact():
    module = neuron.IFNode(v_reset=-0.25)
    spec = sj_adapter.SpikingJellyIFAdapter(module).spec
    assert (spec.mem_decay, spec.input_gain, spec.reset, spec.reset_value) == (
        1.0,
        1.0,
        "zero",
        -0.25,
    )


def test_lif_nonzero_v_reset_leaks_towards_it_as_spec_rest():
    """A hard-reset LIF leaks towards v_reset: the spec's rest, not a constant drive."""
    module = neuron.LIFNode(tau=2.0, v_reset=-0.5, step_mode="m")
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    x_seq = inputs(T, torch.float64, "cpu")
    module(x_seq.float())
    assert adapter.spec.rest == -0.5
    _, u_ref = spec_reference(adapter.spec, x_seq.float())
    torch.testing.assert_close(u_ref, records[0].u)
    _, u_shifted = spec_reference(adapter.spec, x_seq.float(), drive=0.5 * -0.5)
    assert not torch.allclose(u_shifted, records[0].u)


@pytest.mark.parametrize("mode", MODES)
def test_matched_configuration(mode):
    module = neuron.LIFNode(
        tau=2.0,
        decay_input=False,
        v_reset=0.0,
        surrogate_function=surrogate.SuperSpike(alpha=1.0),
        step_mode=mode,
    )
    adapter = adapter_for(module)(module)
    assert isinstance(adapter, sj_adapter.SpikingJellyLIFAdapter)
    assert adapter.spec == NeuronSpec(
        framework="spikingjelly",
        neuron="LIFNode",
        mem_decay=0.5,
        input_gain=1.0,
        threshold=1.0,
        reset="zero",
        fire_on_equal=True,
        syn_decay=None,
        reset_value=0.0,
    )
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    x_seq = inputs(T, torch.float32, "cpu", scale=1.2)
    out = run(module, x_seq, mode)
    s, u, psi = observed(records)
    s_ref, u_ref = spec_reference(adapter.spec, x_seq)
    torch.testing.assert_close(s, out)
    torch.testing.assert_close(s_ref, s)
    torch.testing.assert_close(u_ref, u)
    torch.testing.assert_close(psi, 1.0 / (1.0 + (u - 1.0).abs()) ** 2)


def test_plif_spec_follows_learned_tau():
    module = neuron.ParametricLIFNode(init_tau=2.0, step_mode="m")
    adapter = adapter_for(module)(module)
    assert adapter.spec.mem_decay == pytest.approx(0.5)
    with torch.no_grad():
        module.w.fill_(-math.log(4.0 - 1.0))  # tau = 4
    assert adapter.spec.mem_decay == pytest.approx(0.75, abs=1e-7)
    assert adapter.spec.input_gain == pytest.approx(0.25, abs=1e-7)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    x_seq = inputs(T, torch.float64, "cpu", scale=3.0).float()
    module(x_seq)
    s_ref, u_ref = spec_reference(adapter.spec, x_seq)
    torch.testing.assert_close(s_ref, records[0].s)
    torch.testing.assert_close(u_ref, records[0].u)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multistep_with_store_v_seq_uses_v_seq(dtype):
    """The vectorised rebuild from the user's v_seq equals the replay (and the spec)."""
    kwargs = {"tau": 2.0, "v_reset": None}
    plain = make(neuron.LIFNode, kwargs, "m", dtype, "cpu")
    stored = make(neuron.LIFNode, {**kwargs, "store_v_seq": True}, "m", dtype, "cpu")
    got: dict[str, list[NeuronObservation]] = {"plain": [], "stored": []}
    for key, module in (("plain", plain), ("stored", stored)):
        adapter = adapter_for(module)(module)
        adapter.install(got[key].append)
    x_seq = inputs(T, dtype, "cpu")
    for _ in range(2):  # the second call starts from a tensor state
        plain(x_seq)
        stored(x_seq)
    for a, b in zip(got["plain"], got["stored"], strict=True):
        torch.testing.assert_close(a.u, b.u, rtol=0, atol=0)
        torch.testing.assert_close(a.s, b.s, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("user_store", [False, True])
def test_store_v_seq_switched_on_after_u_is_read(user_store, device):
    kwargs = {"tau": 2.0, "v_reset": 0.0, "store_v_seq": user_store}
    module = make(neuron.LIFNode, kwargs, "m", torch.float32, device)
    pristine = copy.deepcopy(module)
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    x_seq = inputs(3 * 7, torch.float32, device)
    x = x_seq.clone().requires_grad_(True)
    x_ref = x_seq.clone().requires_grad_(True)
    outs = [module(x[:7])]
    assert module.store_v_seq is user_store  # nobody read u yet
    _ = records[0].u
    outs += [module(x[7:14]), module(x[14:])]
    assert module.store_v_seq is True
    s_ref, u_ref = spec_reference(adapter.spec, x_seq)
    s, u, _ = observed(records)
    torch.testing.assert_close(s_ref, s, rtol=0, atol=0)
    torch.testing.assert_close(u_ref, u)
    # Same outputs and gradients as a module that was never adapted.
    ref = torch.cat([pristine(x_ref[:7]), pristine(x_ref[7:14]), pristine(x_ref[14:])])
    out = torch.cat(outs)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    (g,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x_ref)
    torch.testing.assert_close(g, g_ref)
    # Single-step mode: never left on by the adapter (it would append every step).
    module.step_mode = "s"
    module(x_seq[0])
    assert module.store_v_seq is user_store
    module.step_mode = "m"
    module(x_seq[:3])
    assert module.store_v_seq is True
    adapter.uninstall()
    assert module.store_v_seq is user_store


# --------------------------------------------------------------------------------- surrogates

SURROGATES = [
    surrogate.Sigmoid(alpha=4.0),
    surrogate.Sigmoid(alpha=2.5),
    surrogate.ATan(alpha=2.0),
    surrogate.ATan(alpha=3.0),
    surrogate.SuperSpike(alpha=1.0),
    surrogate.SuperSpike(alpha=2.5),
    surrogate.PiecewiseQuadratic(alpha=1.0),
    surrogate.PiecewiseExp(alpha=2.0),
    surrogate.SoftSign(alpha=2.0),
    surrogate.Erf(alpha=2.0),
    surrogate.S2NN(alpha=4.0, beta=1.0),  # no closed form: autograd fallback
    surrogate.QPseudoSpike(alpha=2.0),  # no closed form: autograd fallback
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sg", SURROGATES, ids=lambda s: repr(s))
def test_psi_equals_framework_autograd(sg, dtype):
    module = neuron.IFNode(surrogate_function=sg, step_mode="m").to(dtype)
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    x = torch.linspace(-1.0, 3.0, 2 * 50, dtype=dtype).reshape(1, 2, 50)
    module(x)
    obs = records[0]
    centred = obs.u - 1.0
    torch.testing.assert_close(
        obs.psi, surrogate_by_autograd(module.surrogate_function, centred), **tolerances(dtype)
    )
    if type(sg) in sj_adapter._CLOSED_FORMS:  # the closed form, tested against autograd
        closed = sj_adapter._CLOSED_FORMS[type(sg)](centred, sg.alpha)
        torch.testing.assert_close(obs.psi, closed, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sg", SURROGATES[:10], ids=lambda s: repr(s))
def test_psi_equals_fused_kernel_gradient(sg, dtype, device):
    """dS/dx through the module's own (fused for float32) forward equals psi / tau."""
    module = neuron.LIFNode(tau=2.0, surrogate_function=sg).to(device=device, dtype=dtype)
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    x = torch.linspace(-1.0, 5.0, 3 * 40, dtype=dtype, device=device).reshape(3, 40)
    x.requires_grad_(True)
    out = module(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, records[0].psi[0] / 2.0, **tolerances(dtype))


def test_surrogate_module_is_never_needed_by_fused_path():
    """SpikingJelly's fused path does not call the surrogate module; psi is still right."""
    calls = []
    sg = surrogate.ATan(alpha=2.0)
    sg.register_forward_hook(lambda *a: calls.append(1))
    module = neuron.LIFNode(surrogate_function=sg, step_mode="m")
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    module(inputs(5, torch.float32, "cpu"))
    assert calls == []  # the framework quirk the adapter must not rely on
    torch.testing.assert_close(
        records[0].psi, surrogate_by_autograd(sg, records[0].u - 1.0), rtol=0, atol=1e-7
    )


# --------------------------------------------------------------------------------- writes


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "cls", "kwargs"),
    [CONFIGS[0], CONFIGS[2], CONFIGS[4], CONFIGS[7], CONFIGS[9]],
    ids=[CONFIG_IDS[i] for i in (0, 2, 4, 7, 9)],
)
def test_threshold_offset_changes_firing(name, cls, kwargs, mode, dtype, device):
    module = make(cls, kwargs, mode, dtype, device)
    sg = module.surrogate_function
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    offset = torch.linspace(-0.4, 0.4, N, dtype=torch.float64, device=device)
    adapter.set_threshold_offset(offset)
    x_seq = inputs(T, dtype, device)
    out = run(module, x_seq, mode)
    # Restored between calls: float threshold, the very same surrogate module.
    assert module.v_threshold == 1.0 and isinstance(module.v_threshold, float)
    assert module.surrogate_function is sg
    s, u, psi = observed(records)
    thr = 1.0 + offset.to(dtype)
    spec = adapter.spec
    s_ref, u_ref = spec_reference(spec, x_seq, threshold=thr)
    torch.testing.assert_close(s, out)
    torch.testing.assert_close(s_ref, s, rtol=0, atol=0)
    torch.testing.assert_close(u_ref, u, **tolerances(dtype))
    s_plain, _ = spec_reference(spec, x_seq)
    assert not torch.equal(s_plain, s)  # the offset changed which neurons fired
    torch.testing.assert_close(psi, surrogate_by_autograd(sg, u - thr), **tolerances(dtype))

    # Removing the offset gives the plain behaviour again.
    adapter.set_threshold_offset(None)
    module.reset()
    records.clear()
    out = run(module, x_seq, mode)
    torch.testing.assert_close(out, s_plain)


def test_threshold_offset_per_sample_broadcast():
    module = neuron.LIFNode(step_mode="s", v_reset=None)
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    offset = torch.rand(B, N) - 0.5  # [B, *features]
    adapter.set_threshold_offset(offset)
    x_seq = inputs(T, torch.float32, "cpu", scale=2.0)
    run(module, x_seq, "s")
    s, u, _ = observed(records)
    s_ref, u_ref = spec_reference(adapter.spec, x_seq, threshold=1.0 + offset)
    torch.testing.assert_close(s_ref, s)
    torch.testing.assert_close(u_ref, u)


@pytest.mark.parametrize("mode", MODES)
def test_threshold_restored_when_forward_raises(mode):
    module = neuron.IFNode(step_mode=mode)
    sg = module.surrogate_function
    adapter = adapter_for(module)(module)
    adapter.install(lambda obs: None)
    adapter.set_threshold_offset(torch.zeros(N))
    with pytest.raises(RuntimeError):
        module(torch.rand(2, 3, N + 1) if mode == "m" else torch.rand(3, N + 1))
    assert module.v_threshold == 1.0 and isinstance(module.v_threshold, float)
    assert module.surrogate_function is sg


@pytest.mark.parametrize("mode", MODES)
def test_spike_mask(mode):
    module = neuron.IFNode(step_mode=mode, v_reset=None)
    twin = copy.deepcopy(module)
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    mask = (torch.rand(B, N) > 0.5).float()
    adapter.set_spike_mask(mask)
    x_seq = inputs(T, torch.float32, "cpu")
    out = run(module, x_seq, mode)
    ref = run(twin, x_seq, mode)
    assert float(ref.sum()) > 0 and float((ref * (1 - mask)).sum()) > 0
    torch.testing.assert_close(out, ref * mask, rtol=0, atol=0)  # exactly the masked ones
    torch.testing.assert_close(observed(records)[0], out, rtol=0, atol=0)
    torch.testing.assert_close(module.v, twin.v, rtol=0, atol=0)  # reset follows unmasked
    _, u, _ = observed(records)
    torch.testing.assert_close((u >= 1.0).float(), ref, rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_uninstall_restores_original_behaviour(mode):
    module = neuron.LIFNode(step_mode=mode, v_reset=None, surrogate_function=surrogate.ATan())
    pristine = copy.deepcopy(module)
    sg = module.surrogate_function
    adapter = adapter_for(module)(module)
    adapter.install(lambda obs: obs.u)
    adapter.detach_state = True
    adapter.set_threshold_offset(torch.full((N,), 0.3))
    adapter.set_spike_mask(torch.zeros(N))
    x_seq = inputs(T, torch.float32, "cpu")
    run(module, x_seq, mode)
    adapter.uninstall()
    assert not module._forward_hooks and not module._forward_pre_hooks
    assert module.v_threshold == 1.0 and isinstance(module.v_threshold, float)
    assert module.surrogate_function is sg and module.store_v_seq is False
    module.reset()
    x = x_seq.clone().requires_grad_(True)
    x2 = x_seq.clone().requires_grad_(True)
    out = run(module, x, mode)
    ref = run(pristine, x2, mode)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(module.v, pristine.v, rtol=0, atol=0)
    (g,) = torch.autograd.grad(out.sum(), x)
    (g2,) = torch.autograd.grad(ref.sum(), x2)
    torch.testing.assert_close(g, g2, rtol=0, atol=0)


# --------------------------------------------------------------------------------- state


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("detach", [False, True])
def test_detach_state(mode, detach):
    module = neuron.LIFNode(step_mode=mode, surrogate_function=surrogate.Sigmoid(alpha=1.0))
    adapter = adapter_for(module)(module)
    adapter.install(lambda obs: None)
    adapter.detach_state = detach
    x1 = (torch.rand(2, B, N) if mode == "m" else torch.rand(B, N)).requires_grad_(True)
    x2 = (torch.rand(2, B, N) if mode == "m" else torch.rand(B, N)).requires_grad_(True)
    module(x1)
    out2 = module(x2)
    g1, g2 = torch.autograd.grad(out2.sum(), (x1, x2), allow_unused=True)
    assert g2 is not None and float(g2.abs().sum()) > 0  # gradients within the call remain
    if detach:
        assert g1 is None or float(g1.abs().sum()) == 0.0
    else:
        assert g1 is not None and float(g1.abs().sum()) > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "cls", "kwargs"), [CONFIGS[3], CONFIGS[8]], ids=["lif", "plif"])
def test_state_dict_round_trip_and_reset(name, cls, kwargs, mode):
    module = make(cls, kwargs, mode, torch.float32, "cpu")
    fresh = copy.deepcopy(module)
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    x_seq = inputs(3 * 5, torch.float32, "cpu")
    first, second, third = x_seq[:5], x_seq[5:10], x_seq[10:]

    initial = adapter.state_dict()  # v is still the float reset value
    assert set(initial) == set(module._memories) == {"v"}
    run(module, first, mode)
    saved = adapter.state_dict()
    assert saved["v"].shape == (B, N)
    continuation = run(module, second, mode)
    records.clear()
    run(module, third, mode)
    u_after = observed(records)[1]

    adapter.load_state_dict(saved)
    again = run(module, second, mode)
    torch.testing.assert_close(again, continuation, rtol=0, atol=0)
    records.clear()
    run(module, third, mode)
    torch.testing.assert_close(observed(records)[1], u_after, rtol=0, atol=0)

    adapter.reset()
    torch.testing.assert_close(run(module, first, mode), run(fresh, first, mode), rtol=0, atol=0)
    adapter.load_state_dict(initial)
    assert isinstance(module.v, float)
    fresh.reset()
    torch.testing.assert_close(run(module, x_seq, mode), run(fresh, x_seq, mode), rtol=0, atol=0)


def test_membrane_is_lazy():
    module = neuron.LIFNode(step_mode="m")
    adapter = adapter_for(module)(module)
    calls = []
    original = adapter._membrane

    def counting(*args):
        calls.append(1)
        return original(*args)

    adapter._membrane = counting
    spikes = []
    adapter.install(lambda obs: spikes.append(obs.s))  # an STDP-like reader: spikes only
    module(inputs(T, torch.float32, "cpu"))
    assert calls == [] and len(spikes) == 1


# --------------------------------------------------------------------------------- errors


def test_registry_and_unsupported_neurons():
    assert adapter_for(neuron.IFNode()) is sj_adapter.SpikingJellyIFAdapter
    assert adapter_for(neuron.LIFNode()) is sj_adapter.SpikingJellyLIFAdapter
    assert adapter_for(neuron.ParametricLIFNode()) is sj_adapter.SpikingJellyPLIFAdapter
    for other in (neuron.SimpleLIFNode(tau=2.0, decay_input=True), neuron.QIFNode()):
        assert adapter_for(other) is None
        assert is_framework_neuron(other)  # attach() reports it instead of skipping it
    assert not is_framework_neuron(torch.nn.Linear(2, 2))
    with pytest.raises(UnsupportedModuleError, match=r"IFNode.*LIFNode"):
        sj_adapter.SpikingJellyLIFAdapter(neuron.IFNode())


def test_unsupported_configurations():
    module = neuron.LIFNode(surrogate_function=surrogate.Sigmoid(spiking=False))
    with pytest.raises(UnsupportedModuleError, match=r"LIFNode.*spiking.*spiking=True"):
        sj_adapter.SpikingJellyLIFAdapter(module)
    module = neuron.IFNode()
    module.v_threshold = torch.ones(3)
    with pytest.raises(UnsupportedModuleError, match=r"IFNode.*v_threshold.*float"):
        sj_adapter.SpikingJellyIFAdapter(module)
    module = neuron.IFNode()
    module._neuron_precision = (torch.float16, "fp32", "fp32")
    with pytest.raises(UnsupportedModuleError, match=r"IFNode.*precision"):
        sj_adapter.SpikingJellyIFAdapter(module)
    module = neuron.LIFNode()
    module.backend = "cupy"
    with pytest.raises(UnsupportedModuleError, match=r"backend='cupy'.*'torch'"):
        sj_adapter.SpikingJellyLIFAdapter(module)
    # __init__ must not change the module.
    module = neuron.LIFNode()
    before = (module.v_threshold, module.surrogate_function, module.store_v_seq)
    sj_adapter.SpikingJellyLIFAdapter(module)
    assert before == (module.v_threshold, module.surrogate_function, module.store_v_seq)
    assert not module._forward_hooks and not module._forward_pre_hooks


def test_configuration_changed_after_install_is_reported():
    module = neuron.LIFNode()
    adapter = adapter_for(module)(module)
    adapter.install(lambda obs: None)
    module(torch.rand(B, N))
    module.surrogate_function.set_spiking_mode(False)
    with pytest.raises(UnsupportedModuleError, match="spiking"):
        module(torch.rand(B, N))
    module.surrogate_function.set_spiking_mode(True)
    module.v_threshold = 0.5  # a new float threshold is fine and read by the spec
    module(torch.rand(B, N))
    assert adapter.spec.threshold == 0.5


class _StrictSpike(surrogate.SurrogateFunctionBase):
    """A surrogate whose forward fires at x > 0 (breaks SpikingJelly's u >= thr)."""

    def __init__(self):
        super().__init__(spiking=True)

    @staticmethod
    def spiking_function(x):
        return (x > 0).to(x) + 0 * x

    @staticmethod
    def primitive_function(x):
        return torch.sigmoid(x)


def test_firing_rule_is_verified():
    module = neuron.IFNode(surrogate_function=_StrictSpike(), step_mode="s")
    adapter = adapter_for(module)(module)
    records: list[NeuronObservation] = []
    adapter.install(records.append)
    module(torch.ones(B, N))  # u == threshold exactly
    with pytest.raises(UnsupportedModuleError, match="not H"):
        _ = records[0].u


def test_check_version_range():
    check_version("spikingjelly", "2.0.0", "2.0", "3")
    check_version("spikingjelly", "2.9.1", "2.0", "3")
    for bad in ("0.0.0.0.14", "1.9", "3.0.0"):
        with pytest.raises(UnsupportedFrameworkVersionError, match="spikingjelly"):
            check_version("spikingjelly", bad, "2.0", "3")
