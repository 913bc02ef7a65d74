"""Tests of the Norse adapters against the real Norse 1.x (no mocks).

Independent references used here: the states Norse itself returns (post-reset ``v``; equal to the
pre-reset ``u`` where no spike occurred), a reference loop driven only by the adapter's
:class:`NeuronSpec`, and autograd through Norse's own ``threshold(x, method, alpha)``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

pytest.importorskip("norse")
warnings.filterwarnings("ignore", category=FutureWarning)

from norse.torch import (  # noqa: E402
    LIF,
    LICell,
    LIFBoxCell,
    LIFBoxParameters,
    LIFCell,
    LIFParameters,
    LIFRecurrentCell,
    Lift,
)
from norse.torch.functional.reset import reset_subtract  # noqa: E402
from norse.torch.functional.threshold import threshold  # noqa: E402

from plasticity_plugins.adapters import (  # noqa: E402
    NeuronObservation,
    NeuronSpec,
    adapter_for,
    is_framework_neuron,
)
from plasticity_plugins.adapters.norse import (  # noqa: E402
    ADAPTERS,
    NorseCellAdapter,
    NorseLiftAdapter,
    NorseSequenceAdapter,
)
from plasticity_plugins.errors import (  # noqa: E402
    InputError,
    UnsupportedFrameworkVersionError,
    UnsupportedModuleError,
    check_version,
)

T, B, F = 20, 3, 5

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.needs_cuda,  # tests/conftest.py skips these without a CUDA device
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]
DTYPES = [torch.float32, torch.float64]
METHODS = ["super", "heaviside", "tanh", "circ", "triangle", "heavi_erfc"]


# --------------------------------------------------------------------------- modules
def _lif_p(method: str = "super", alpha: float = 2.0) -> LIFParameters:
    return LIFParameters(
        tau_syn_inv=torch.tensor(200.0),
        tau_mem_inv=torch.tensor(300.0),
        v_th=torch.tensor(1.0),
        v_reset=torch.tensor(0.0),
        method=method,
        alpha=torch.tensor(alpha),
    )


def _box_p(method: str = "super", alpha: float = 1.0, subtract: bool = False) -> LIFBoxParameters:
    """The matched configuration used across frameworks (v_leak a tensor, see the adapter)."""
    extra = {"reset_method": reset_subtract} if subtract else {}
    return LIFBoxParameters(
        tau_mem_inv=500.0,
        v_th=1.0,
        v_reset=0.0,
        v_leak=torch.tensor(0.0),
        method=method,
        alpha=alpha,
        **extra,
    )


FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "LIFCell": lambda: LIFCell(p=_lif_p(), dt=1e-3),
    "LIFBoxCell": lambda: LIFBoxCell(p=_box_p(), dt=1e-3),
    "LIFBoxCell-subtract": lambda: LIFBoxCell(p=_box_p(subtract=True), dt=1e-3),
    "LIF": lambda: LIF(p=_lif_p(), dt=1e-3),
    "LIF-record": lambda: LIF(p=_lif_p(), dt=1e-3, record_states=True),
    "Lift-LIFCell": lambda: Lift(LIFCell(p=_lif_p(), dt=1e-3)),
    "Lift-LIFBoxCell": lambda: Lift(LIFBoxCell(p=_box_p(), dt=1e-3)),
}
KINDS = list(FACTORIES)


def _cell(module: nn.Module) -> Any:
    return module.lifted_module if isinstance(module, Lift) else module


def _multistep(module: nn.Module) -> bool:
    return isinstance(module, (LIF, Lift))


def _inputs(module: nn.Module, dtype: torch.dtype, device: str, steps: int = T) -> Tensor:
    """Random input currents that make a good fraction of the neurons fire."""
    amp = 1.0 if isinstance(_cell(module), LIFCell) else 2.5
    x = torch.rand(steps, B, F, dtype=torch.float64) * amp - 0.15 * amp
    return x.to(device=device, dtype=dtype)


def _last(module: nn.Module, state: Any) -> Any:
    if getattr(module, "record_states", False):
        return type(state)(*(f[-1] for f in state))
    return state


def drive(
    module: nn.Module, x: Tensor, state: Any = None, keyword: bool = False
) -> tuple[Tensor, Any]:
    """Run ``module`` over ``x`` ``[T, B, F]`` like a user loop; spikes ``[T, B, F]``, state."""
    if isinstance(module, Lift):
        out, st = module(x if state is None else (x, state))
        return out, st
    if isinstance(module, LIF):
        out, st = module(x, state=state) if keyword else module(x, state)
        return out, _last(module, st)
    outs = []
    st = state
    for t in range(x.shape[0]):
        z, st = module(x[t], state=st) if keyword else module(x[t], st)
        outs.append(z)
    return torch.stack(outs), st


def framework_v(module: nn.Module, x: Tensor) -> Tensor:
    """Post-reset membranes per step, as Norse itself reports them (module unhooked)."""
    if isinstance(module, LIF):
        twin = LIF(p=module.p, dt=module.dt, record_states=True)
        _, st = twin(x)
        return st.v.detach()
    cell = _cell(module)
    vs, st = [], None
    for t in range(x.shape[0]):
        _, st = cell(x[t], st)
        vs.append(st.v.detach())
    return torch.stack(vs)


def spec_reference(
    spec: NeuronSpec, x: Tensor, offset: Tensor | float = 0.0
) -> tuple[Tensor, Tensor]:
    """``u``, ``s`` from NeuronSpec alone (the contract's equations), initial state zero."""
    thr = spec.threshold + offset
    v = torch.full_like(x[0], spec.rest)  # Norse starts at v_leak
    i = torch.zeros_like(x[0])
    us, ss = [], []
    for t in range(x.shape[0]):
        drive_t = x[t]
        if spec.syn_decay is not None:
            i = spec.syn_decay * i + x[t]
            drive_t = i
        u = spec.rest + spec.mem_decay * (v - spec.rest) + spec.input_gain * drive_t
        s = (u >= thr if spec.fire_on_equal else u > thr).to(x.dtype)
        if spec.reset == "zero":
            v = u * (1 - s) + s * spec.reset_value
        elif spec.reset == "subtract":
            v = u - s * thr
        else:
            v = u
        us.append(u)
        ss.append(s)
    return torch.stack(us), torch.stack(ss)


def norse_psi(u: Tensor, p: Any, thr: Tensor | float) -> Tensor:
    """dz/du of Norse's own threshold function, by autograd."""
    c = (u - thr).detach().clone().requires_grad_(True)
    out = threshold(c, p.method, p.alpha)
    if not out.requires_grad:  # heaviside: Norse provides no gradient at all
        return torch.zeros_like(u)
    (g,) = torch.autograd.grad(out.sum(), c)
    return g


def observe(module: nn.Module, **attrs: Any) -> tuple[Any, list[NeuronObservation]]:
    cls = adapter_for(module)
    assert cls is not None
    adapter = cls(module)
    for k, v in attrs.items():
        setattr(adapter, k, v)
    obs: list[NeuronObservation] = []
    adapter.install(obs.append)
    return adapter, obs


def cat(obs: list[NeuronObservation], what: str) -> Tensor:
    return torch.cat([getattr(o, what) for o in obs])


def _tol(dtype: torch.dtype) -> dict[str, Any]:
    return (
        {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    )


# --------------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_observation_matches_norse_and_spec(kind: str, dtype: torch.dtype, device: str) -> None:
    module = FACTORIES[kind]()
    x = _inputs(module, dtype, device)
    v_fw = framework_v(module, x)
    adapter, obs = observe(module)
    assert adapter.multistep == _multistep(module)
    out, _ = drive(module, x)
    assert len(obs) == (1 if adapter.multistep else T)

    s, u, psi = cat(obs, "s"), cat(obs, "u"), cat(obs, "psi")
    assert s.shape == u.shape == psi.shape == (T, B, F)
    assert s.dtype == u.dtype == dtype and s.device.type == device
    assert torch.equal(s, out.detach())
    assert 0.05 < s.mean().item() < 0.95

    spec = adapter.spec
    p = _cell(module).p
    # u is exactly what Norse thresholded: s == H(u - v_th) bit for bit.
    assert torch.equal(s, (u > spec.threshold).to(dtype))
    # Norse's own post-reset membrane equals u where no spike, the reset of u where a spike.
    quiet = s == 0
    assert torch.equal(u[quiet], v_fw[quiet])
    reset_u = (
        u - spec.threshold if spec.reset == "subtract" else torch.full_like(u, spec.reset_value)
    )
    assert torch.equal(v_fw[~quiet], reset_u[~quiet])
    # A loop driven only by the NeuronSpec reproduces u and s.
    u_ref, s_ref = spec_reference(spec, x)
    torch.testing.assert_close(u, u_ref, **_tol(dtype))
    assert torch.equal(s, s_ref)
    # psi is Norse's own surrogate derivative.
    torch.testing.assert_close(psi, norse_psi(u, p, p.v_th), **_tol(dtype))
    adapter.uninstall()


def test_spec_fields() -> None:
    lif = NorseCellAdapter(LIFCell(p=_lif_p(), dt=1e-3)).spec
    assert lif.framework == "norse" and lif.neuron == "LIFCell"
    assert lif.input_gain == pytest.approx(0.3) and lif.mem_decay == pytest.approx(0.7)
    assert lif.syn_decay == pytest.approx(0.8)
    assert (lif.threshold, lif.reset, lif.reset_value, lif.fire_on_equal) == (
        1.0,
        "zero",
        0.0,
        False,
    )
    box = NorseCellAdapter(LIFBoxCell(p=_box_p(), dt=1e-3)).spec
    assert (box.mem_decay, box.input_gain, box.syn_decay) == (0.5, 0.5, None)
    sub = NorseCellAdapter(LIFBoxCell(p=_box_p(subtract=True), dt=1e-3)).spec
    assert sub.reset == "subtract"
    assert NorseSequenceAdapter(LIF(p=_lif_p())).spec.neuron == "LIF"
    assert NorseLiftAdapter(Lift(LIFBoxCell(p=_box_p()))).spec.neuron == "Lift(LIFBoxCell)"


def test_matched_configuration_with_gain_normalised_weights() -> None:
    """LIFBoxCell(tau_mem_inv=500, dt=1e-3) with weights / 0.5 is a beta=0.5 leaky neuron."""
    module = LIFBoxCell(p=_box_p(), dt=1e-3)
    adapter, obs = observe(module)
    gain = adapter.spec.input_gain
    assert gain == 0.5
    w = torch.randn(F, 4, dtype=torch.float64)
    pre = (torch.rand(T, B, 4, dtype=torch.float64) < 0.4).to(torch.float64)
    drive(module, (pre @ w.T) / gain)
    # Reference: u = 0.5 v + W x, v = u (1 - s), s = u > 1 (snnTorch Leaky(beta=0.5) form).
    v = torch.zeros(B, F, dtype=torch.float64)
    for t in range(T):
        u = 0.5 * v + pre[t] @ w.T
        s = (u > 1.0).to(u.dtype)
        torch.testing.assert_close(obs[t].u[0], u)
        assert torch.equal(obs[t].s[0], s)
        v = u * (1 - s)


def test_float_v_leak_needs_tensor_for_initial_state() -> None:
    """Norse 1.1 LIFBoxCell cannot build its initial state from a float v_leak."""
    p = LIFBoxParameters(
        tau_mem_inv=500.0, v_th=1.0, v_reset=0.0, v_leak=0.0, method="super", alpha=1.0
    )
    module = LIFBoxCell(p=p, dt=1e-3)
    with pytest.raises(ValueError):
        module(torch.ones(B, F))  # Norse's own failure, without the adapter
    adapter, obs = observe(module)
    with pytest.raises(UnsupportedModuleError, match="v_leak"):
        module(torch.ones(B, F))
    assert module.p is p
    z, _ = module(torch.ones(B, F) * 3, LIFBoxCell(p=_box_p()).initial_state(torch.ones(B, F)))
    assert torch.equal(obs[-1].s[0], z) and z.sum() == B * F
    adapter.uninstall()


# --------------------------------------------------------------------------- surrogates
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
def test_psi_closed_forms_match_norse_autograd(method: str, dtype: torch.dtype) -> None:
    module = LIFBoxCell(p=_box_p(method=method, alpha=0.7), dt=1e-3)
    x = _inputs(module, dtype, "cpu")
    adapter, obs = observe(module)
    drive(module, x)
    u, psi = cat(obs, "u"), cat(obs, "psi")
    torch.testing.assert_close(psi, norse_psi(u, module.p, module.p.v_th), **_tol(dtype))
    # Also on a dense grid around the threshold.
    grid = torch.linspace(-3, 5, 801, dtype=dtype)
    call_psi = obs[-1]._surrogate(grid)
    torch.testing.assert_close(call_psi, norse_psi(grid, module.p, 1.0), **_tol(dtype))
    adapter.uninstall()


def test_super_ignores_alpha() -> None:
    grid = torch.linspace(-3, 3, 61, dtype=torch.float64)
    psis = []
    for alpha in (1.0, 7.0):
        module = LIFBoxCell(p=_box_p(alpha=alpha))
        adapter, obs = observe(module)
        module(torch.zeros(B, F))
        psis.append(obs[0]._surrogate(grid + 1.0))
        adapter.uninstall()
    assert torch.equal(psis[0], psis[1])
    torch.testing.assert_close(psis[0], 1 / (grid.abs() + 1) ** 2)


def test_membrane_is_lazy() -> None:
    module = LIF(p=_lif_p())
    adapter, obs = observe(module)
    calls: list[int] = []
    original = adapter._membrane

    def counting(*args: Any) -> Tensor:
        calls.append(1)
        return original(*args)

    adapter._membrane = counting
    drive(module, _inputs(module, torch.float32, "cpu"))
    assert calls == [] and obs[0].s.shape == (T, B, F)
    _ = obs[0].u
    _ = obs[0].psi
    assert calls == [1]
    adapter.uninstall()


# --------------------------------------------------------------------------- writes
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_threshold_offset(kind: str, device: str) -> None:
    dtype = torch.float64
    module = FACTORIES[kind]()
    x = _inputs(module, dtype, device)
    original_p = _cell(module).p
    adapter, obs = observe(module)
    plain, _ = drive(module, x)
    offset = torch.linspace(-0.3, 0.8, F, dtype=torch.float32, device=device)
    adapter.set_threshold_offset(offset)
    obs.clear()
    shifted, _ = drive(module, x)
    assert _cell(module).p is original_p  # only swapped during the call
    assert not torch.equal(shifted, plain)
    u_ref, s_ref = spec_reference(adapter.spec, x, offset.to(dtype))
    assert torch.equal(shifted, s_ref)
    u, psi = cat(obs, "u"), cat(obs, "psi")
    torch.testing.assert_close(u, u_ref, **_tol(dtype))
    assert torch.equal(cat(obs, "s"), (u > 1.0 + offset.to(dtype)).to(dtype))
    torch.testing.assert_close(psi, norse_psi(u, original_p, 1.0 + offset.to(dtype)))
    assert shifted.dtype == dtype  # a float32 offset does not change the output dtype
    adapter.set_threshold_offset(None)
    again, _ = drive(module, x)
    assert torch.equal(again, plain)
    adapter.uninstall()
    assert _cell(module).p is original_p


def test_threshold_offset_restored_when_forward_raises() -> None:
    module = LIFCell(p=_lif_p())
    p = module.p
    adapter, _ = observe(module)
    adapter.set_threshold_offset(torch.full((F,), 0.5))
    bad_state = LIFCell().initial_state(torch.zeros(B, F + 1))._replace(v=torch.zeros(B, F + 1))
    with pytest.raises(RuntimeError):
        module(torch.zeros(B, F), bad_state)
    assert module.p is p
    adapter.uninstall()


@pytest.mark.parametrize("kind", KINDS)
def test_spike_mask(kind: str) -> None:
    module = FACTORIES[kind]()
    x = _inputs(module, torch.float32, "cpu")
    adapter, obs = observe(module)
    plain, plain_state = drive(module, x)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    adapter.set_spike_mask(mask)
    obs.clear()
    masked, masked_state = drive(module, x)
    assert torch.equal(masked, plain * mask)
    assert plain[..., mask == 0].sum() > 0  # the mask did remove spikes
    assert torch.equal(cat(obs, "s"), masked)
    # The neuron's own reset follows the unmasked spikes: same state trajectory.
    assert torch.equal(masked_state.v, plain_state.v)
    adapter.set_spike_mask(None)
    assert torch.equal(drive(module, x)[0], plain)
    adapter.uninstall()


@pytest.mark.parametrize("kind", KINDS)
def test_uninstall_restores_exact_behaviour(kind: str) -> None:
    module = FACTORIES[kind]()
    never = copy.deepcopy(module)
    x = _inputs(module, torch.float32, "cpu")
    original_p = _cell(module).p
    adapter, _ = observe(module, detach_state=True)
    adapter.set_threshold_offset(torch.full((F,), 0.4))
    adapter.set_spike_mask(torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))
    drive(module, x)
    adapter.uninstall()
    for m in (module, _cell(module)):
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert _cell(module).p is original_p
    xr = x.clone().requires_grad_(True)
    xn = x.clone().requires_grad_(True)
    out, st = drive(module, xr)
    ref, ref_st = drive(never, xn)
    assert torch.equal(out, ref) and torch.equal(st.v, ref_st.v)
    (out.sum() + st.v.sum()).backward()
    (ref.sum() + ref_st.v.sum()).backward()
    assert xr.grad is not None and xn.grad is not None and torch.equal(xr.grad, xn.grad)


# --------------------------------------------------------------------------- detach_state
def _two_calls(module: nn.Module, x1: Tensor, x2: Tensor, keyword: bool) -> Tensor:
    if _multistep(module):
        _, st = drive(module, x1, keyword=keyword)
        out, _ = drive(module, x2, st, keyword=keyword)
        return out
    _, st = module(x1)
    out, _ = module(x2, state=st) if keyword else module(x2, st)
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("keyword", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_detach_state(kind: str, keyword: bool, device: str) -> None:
    for detach in (False, True):
        module = FACTORIES[kind]()
        steps = 3 if _multistep(module) else 1
        x1 = (torch.full((steps, B, F), 0.2, device=device)).requires_grad_(True)
        x2 = torch.full((steps, B, F), 0.3, device=device).requires_grad_(True)
        adapter, _ = observe(module, detach_state=detach)
        arg1 = x1 if _multistep(module) else x1[0]
        arg2 = x2 if _multistep(module) else x2[0]
        out = _two_calls(module, arg1, arg2, keyword)
        out.sum().backward()
        reached = x1.grad is not None and bool(x1.grad.abs().sum() > 0)
        assert reached is (not detach)
        adapter.uninstall()


# --------------------------------------------------------------------------- state
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_mid_sequence_and_reset(kind: str) -> None:
    module = FACTORIES[kind]()
    x = _inputs(module, torch.float64, "cpu")
    adapter, _ = observe(module)
    assert adapter.state_dict() == {}
    first, st = drive(module, x[:8])
    saved = adapter.state_dict()
    fields = ("v", "i") if isinstance(_cell(module), (LIFCell, LIF)) else ("v",)
    assert tuple(saved) == fields
    for f in fields:
        assert torch.equal(saved[f], getattr(st, f)) and not saved[f].requires_grad
    ref, _ = drive(module, x[8:], st)  # continuation with the user's own state
    # Restore: the next call given state=None continues from the saved state.
    adapter.load_state_dict(saved)
    assert adapter.state_dict().keys() == saved.keys()
    cont, _ = drive(module, x[8:])
    assert torch.equal(cont, ref)
    full, _ = drive(copy.deepcopy(module), x)
    assert torch.equal(torch.cat([first, cont]), full)
    # reset(): forget everything, the next state=None call starts from Norse's initial state.
    adapter.load_state_dict(saved)
    adapter.reset()
    assert adapter.state_dict() == {}
    restarted, _ = drive(module, x[:8])
    assert torch.equal(restarted, first)
    adapter.uninstall()


def test_loaded_state_dropped_for_explicit_state() -> None:
    module = LIFCell(p=_lif_p())
    x = _inputs(module, torch.float64, "cpu")
    adapter, _ = observe(module)
    _, st = drive(module, x[:5])
    adapter.load_state_dict({"v": torch.full((B, F), 0.9, dtype=torch.float64), "i": st.i})
    z, st2 = module(x[5], st)  # explicit state: used as given
    ref, _ = copy.deepcopy(module)(x[5], st)
    assert torch.equal(z, ref)
    assert torch.equal(adapter.state_dict()["v"], st2.v)  # loaded state was dropped
    adapter.uninstall()


def test_load_state_dict_rejects_wrong_keys() -> None:
    adapter = NorseCellAdapter(LIFCell(p=_lif_p()))
    with pytest.raises(InputError, match="state keys"):
        adapter.load_state_dict({"v": torch.zeros(1)})
    adapter.load_state_dict({})  # empty: same as reset()
    assert adapter.state_dict() == {}


# --------------------------------------------------------------------------- registry / errors
def test_registry_and_is_neuron() -> None:
    assert set(ADAPTERS) == {NorseCellAdapter, NorseSequenceAdapter, NorseLiftAdapter}
    assert adapter_for(LIFCell()) is NorseCellAdapter
    assert adapter_for(LIFBoxCell()) is NorseCellAdapter
    assert adapter_for(LIF()) is NorseSequenceAdapter
    assert adapter_for(Lift(LIFCell())) is NorseLiftAdapter
    assert adapter_for(Lift(nn.Linear(2, 2))) is None
    assert adapter_for(LIFRecurrentCell(2, 3)) is None
    assert is_framework_neuron(LIFRecurrentCell(2, 3))  # a neuron, reported as unsupported
    assert is_framework_neuron(Lift(LIFRecurrentCell(2, 3)))
    assert not is_framework_neuron(LICell())  # leaky integrator read-out: never spikes
    assert not is_framework_neuron(Lift(nn.Linear(2, 2)))


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: LIFCell(p=LIFParameters(method="adjoint")), r"LIFCell.*activation.*adjoint"),
        (lambda: LIFCell(p=LIFParameters(method="nope")), r"LIFCell.*p\.method='nope'"),
        (lambda: LIF(p=LIFParameters(v_th=torch.ones(F))), r"LIF: p\.v_th.*one-element"),
        (
            lambda: LIFBoxCell(p=LIFBoxParameters(reset_method=lambda z, v, r, th: v)),
            r"LIFBoxCell.*p\.reset_method.*reset_value or reset_subtract",
        ),
        (lambda: LIFCell(dt=-1.0), r"LIFCell.*dt=-1\.0.*positive"),
    ],
)
def test_unsupported_configurations(make: Callable[[], nn.Module], pattern: str) -> None:
    module = make()
    before = module.p
    cls = NorseSequenceAdapter if isinstance(module, LIF) else NorseCellAdapter
    with pytest.raises(UnsupportedModuleError, match=pattern):
        cls(module)
    assert module.p is before and not module._forward_hooks


def test_unsupported_modules() -> None:
    with pytest.raises(UnsupportedModuleError, match=r"Lift.*Linear.*Lift\(LIFCell"):
        NorseLiftAdapter(Lift(nn.Linear(2, 2)))
    with pytest.raises(UnsupportedModuleError, match="LIF is not handled by NorseCellAdapter"):
        NorseCellAdapter(LIF())


def test_sparse_input_rejected() -> None:
    module = LIFCell(p=_lif_p())
    adapter, _ = observe(module)
    with pytest.raises(InputError, match="sparse"):
        module(torch.eye(F).to_sparse())
    adapter.uninstall()


def test_install_twice_rejected() -> None:
    adapter, _ = observe(LIFCell())
    with pytest.raises(Exception, match="already installed"):
        adapter.install(lambda o: None)
    adapter.uninstall()


def test_check_version_range() -> None:
    check_version("norse", "1.1.0", "1.1", "2")
    check_version("norse", "1.9.3", "1.1", "2")
    for bad in ("1.0.9", "2.0.0", "0.0.7"):
        with pytest.raises(UnsupportedFrameworkVersionError, match=r"norse .*>=1\.1,<2"):
            check_version("norse", bad, "1.1", "2")


def test_lift_inner_cell_used_alone_is_not_observed() -> None:
    lift = Lift(LIFCell(p=_lif_p()))
    adapter, obs = observe(lift)
    lift.lifted_module(torch.ones(B, F))
    assert obs == []
    lift(torch.ones(4, B, F))
    assert len(obs) == 1 and obs[0].s.shape == (4, B, F)
    adapter.uninstall()


def test_nonzero_v_leak_is_the_spec_rest() -> None:
    cell = LIFBoxCell(
        p=LIFBoxParameters(
            tau_mem_inv=torch.tensor(300.0),
            v_leak=torch.tensor(-0.4),
            v_th=torch.tensor(0.3),
            v_reset=torch.tensor(-0.4),
            method="super",
            alpha=torch.tensor(1.0),
        ),
        dt=1e-3,
    )
    adapter = NorseCellAdapter(cell)
    assert adapter.spec.rest == pytest.approx(-0.4)
    seen: list[NeuronObservation] = []
    adapter.install(seen.append)
    x = torch.rand(12, 3, 4) * 3
    state = None
    for x_t in x:
        _, state = cell(x_t, state)
    u_ref, s_ref = spec_reference(adapter.spec, x)
    torch.testing.assert_close(torch.cat([o.u for o in seen]), u_ref)
    assert torch.equal(torch.cat([o.s for o in seen]), s_ref) and s_ref.sum() > 0
    adapter.uninstall()
