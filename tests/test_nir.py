"""NIR export after a local rule: each framework's own exporter, through ``export_nir``.

Per framework: a 64-16-4 network is trained a few sequences with pair STDP, detached and exported;
the graph's weights must be the trained weights (not the initial ones) and the neuron nodes must
carry the framework's constants in NIR's units (checked against the NIR equations, not against
the exporter's code). Exporting while attached, a neuron the exporter does not map, and a
framework without an exporter raise clear errors.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")
pytestmark = [
    # nirtorch 2.6 deprecates extract_nir_graph / load, which snnTorch and Norse still call
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

import plasticity_plugins  # noqa: E402
from plasticity_plugins.errors import AttachError, UnsupportedModuleError  # noqa: E402
from plasticity_plugins.networks import matched_lif  # noqa: E402
from plasticity_plugins.nir import NoExporterError, export_nir  # noqa: E402
from plasticity_plugins.rules import STDP  # noqa: E402

FRAMEWORKS = ["snntorch", "spikingjelly", "norse"]
N_IN, N_HIDDEN, N_OUT = 64, 16, 4


def build(framework: str) -> nn.Module:
    """``Linear(64, 16) -> LIF -> Linear(16, 4, no bias) -> LIF`` with the matched neuron."""
    pytest.importorskip(framework)
    if framework == "spikingjelly":
        from spikingjelly.activation_based import layer

        fc1, fc2 = layer.Linear(N_IN, N_HIDDEN), layer.Linear(N_HIDDEN, N_OUT, bias=False)
    else:
        fc1, fc2 = nn.Linear(N_IN, N_HIDDEN), nn.Linear(N_HIDDEN, N_OUT, bias=False)
    with torch.no_grad():  # positive weights: both layers spike, so STDP changes both
        fc1.weight.uniform_(0.0, 0.2)
        fc2.weight.uniform_(0.0, 0.8)
    layers = [fc1, matched_lif(framework), fc2, matched_lif(framework)]
    if framework == "norse":
        import norse.torch as norse

        return norse.SequentialState(*layers)
    return nn.Sequential(*layers)


def train(net: nn.Module, framework: str) -> plasticity_plugins.AttachHandle:
    """Attach STDP and run 3 sequences of 10 steps (batch 4); returns the still-attached handle."""
    handle = plasticity_plugins.attach(net, STDP(a_plus=1e-2, a_minus=5e-3, tau_pre=5, tau_post=5))
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    with torch.no_grad():
        for sequence in torch.rand(3, 10, 4, N_IN).lt(0.3).float():
            handle.reset()
            optimizer.zero_grad()
            state = None
            for x_t in sequence:
                if framework == "norse":
                    _, state = net(x_t, state)
                else:
                    net(x_t)
            optimizer.step()
    return handle


def node(graph: nir.NIRGraph, name: str) -> nir.NIRNode:
    """The node of module ``name`` (SpikingJelly's torch.fx tracer writes ``_0`` for ``0``)."""
    return graph.nodes[name] if name in graph.nodes else graph.nodes["_" + name.replace(".", "_")]


def numpy(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@pytest.fixture(params=FRAMEWORKS)
def trained(request) -> tuple[str, nn.Module, list[torch.Tensor]]:
    framework = request.param
    net = build(framework)
    initial = [net[0].weight.detach().clone(), net[2].weight.detach().clone()]
    train(net, framework).detach()
    assert not plasticity_plugins.is_attached(net)
    for layer, before in zip((net[0], net[2]), initial, strict=True):
        assert not torch.equal(layer.weight.detach(), before), "STDP did not change the weights"
    return framework, net, initial


def test_export_holds_the_trained_weights(trained):
    _, net, initial = trained
    graph = export_nir(net, torch.zeros(1, N_IN))
    assert isinstance(graph, nir.NIRGraph)
    fc1, fc2 = node(graph, "0"), node(graph, "2")
    assert isinstance(fc1, nir.Affine)
    np.testing.assert_array_equal(numpy(fc1.weight), numpy(net[0].weight))
    np.testing.assert_array_equal(numpy(fc1.bias), numpy(net[0].bias))
    # fc2 has no bias: nir.Linear (snnTorch, SpikingJelly) or Affine with a zero bias (Norse)
    assert isinstance(fc2, (nir.Linear, nir.Affine))
    np.testing.assert_array_equal(numpy(fc2.weight), numpy(net[2].weight))
    if isinstance(fc2, nir.Affine):
        assert not numpy(fc2.bias).any()
    assert not np.array_equal(numpy(fc1.weight), numpy(initial[0]))
    assert not np.array_equal(numpy(fc2.weight), numpy(initial[1]))
    # input -> fc1 -> lif -> fc2 -> lif -> output
    kinds = sorted(type(n).__name__ for n in graph.nodes.values())
    assert kinds == sorted(["Input", "Affine", "LIF", type(fc2).__name__, "LIF", "Output"])
    assert len(graph.edges) == 5


def test_neuron_constants_map_to_nir_units(trained):
    """The matched neuron (u <- 0.5 u + I, threshold 1, reset to 0) in each exporter's units.

    NIR's LIF is ``tau du/dt = (v_leak - u) + r I``. A step of ``dt`` with decay ``beta``
    gives ``tau = dt / (1 - beta)`` and, for an input added in full each step, ``r = tau / dt``;
    Norse's ``du = dt tau_mem_inv (v_leak - u + I)`` is ``tau = 1 / tau_mem_inv``, ``r = 1``.
    """
    framework, net, _ = trained
    graph = export_nir(net, torch.zeros(1, N_IN))
    for name, size in (("1", N_HIDDEN), ("3", N_OUT)):
        lif = node(graph, name)
        assert isinstance(lif, nir.LIF), type(lif).__name__
        tau, r = numpy(lif.tau).astype(np.float64), numpy(lif.r).astype(np.float64)
        np.testing.assert_allclose(numpy(lif.v_threshold), 1.0)
        if framework == "norse":
            np.testing.assert_allclose(tau, 1 / 500.0, rtol=1e-6)  # tau_mem_inv = 500 / s
            np.testing.assert_allclose(r, 1.0)
        else:
            dt = 1e-4  # both exporters' default time step
            np.testing.assert_allclose(tau, dt / (1 - 0.5), rtol=1e-5)
            np.testing.assert_allclose(r, tau / dt, rtol=1e-5)
            assert tau.shape == (size,)  # one value per neuron, so nir's type inference passes


def test_exporting_while_attached_is_refused():
    framework = "snntorch"
    net = build(framework)
    handle = train(net, framework)
    with pytest.raises(AttachError, match=r"handle\.detach\(\)"):
        export_nir(net, torch.zeros(1, N_IN))
    handle.detach()
    assert isinstance(export_nir(net, torch.zeros(1, N_IN)), nir.NIRGraph)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_attached_refused_in_every_framework(framework):
    net = build(framework)
    handle = plasticity_plugins.attach(net, STDP())
    with pytest.raises(AttachError, match="detach"):
        export_nir(net, torch.zeros(1, N_IN))
    handle.detach()


def test_snntorch_model_is_left_as_it_was():
    """The per-neuron beta / threshold the snnTorch exporter needs are set on a copy only."""
    net = build("snntorch")
    export_nir(net, torch.zeros(1, N_IN))
    assert net[1].beta.dim() == 0 and net[1].threshold.dim() == 0


def test_snntorch_synaptic_and_recurrent():
    snn = pytest.importorskip("snntorch")
    net = nn.Sequential(
        nn.Linear(N_IN, N_HIDDEN),
        snn.RLeaky(beta=0.9, linear_features=N_HIDDEN, init_hidden=True),
        nn.Linear(N_HIDDEN, N_OUT),
        snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True),
    )
    graph = export_nir(net, torch.zeros(1, N_IN))
    assert isinstance(graph.nodes["1.lif"], nir.LIF)
    np.testing.assert_array_equal(
        numpy(graph.nodes["1.w_rec"].weight), numpy(net[1].recurrent.weight)
    )
    cuba = graph.nodes["3"]
    assert isinstance(cuba, nir.CubaLIF)
    np.testing.assert_allclose(numpy(cuba.tau_syn), 1e-4 / (1 - 0.8), rtol=1e-5)
    np.testing.assert_allclose(numpy(cuba.tau_mem), 1e-4 / (1 - 0.9), rtol=1e-5)


def test_norse_round_trip_through_its_own_importer():
    net = build("norse")
    train(net, "norse").detach()
    import norse.torch as norse

    back = norse.from_nir(export_nir(net, torch.zeros(1, N_IN)))
    cells = [m for m in back.modules() if isinstance(m, norse.LIFBoxCell)]
    assert len(cells) == 2
    for cell in cells:  # Norse 1.1.0's own to_nir alone gives 500 / dt here
        torch.testing.assert_close(cell.p.tau_mem_inv.float(), torch.full((), 500.0))
    linears = [m for m in back.modules() if isinstance(m, nn.Linear)]
    torch.testing.assert_close(linears[0].weight, net[0].weight.detach())


@pytest.mark.parametrize(
    ("framework", "make"),
    [
        ("snntorch", lambda snn: snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True)),
        ("snntorch", lambda snn: snn.Lapicque(beta=0.9, init_hidden=True)),
        ("norse", lambda norse: norse.LIF()),
    ],
    ids=["snntorch-Alpha", "snntorch-Lapicque", "norse-LIF"],
)
def test_neuron_without_mapping_is_named(framework, make):
    module = pytest.importorskip({"snntorch": "snntorch", "norse": "norse.torch"}[framework])
    neuron = make(module)
    if framework == "norse":
        net = module.SequentialState(nn.Linear(N_IN, N_HIDDEN), neuron)
    else:
        net = nn.Sequential(nn.Linear(N_IN, N_HIDDEN), neuron)
    with pytest.raises(UnsupportedModuleError, match=rf"1 \({type(neuron).__name__}\).*maps"):
        export_nir(net, torch.zeros(1, N_IN))


def test_spikingjelly_soft_reset_is_the_exporters_error():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    net = nn.Sequential(nn.Linear(N_IN, N_HIDDEN), neuron.LIFNode(v_reset=None))
    with pytest.raises(NotImplementedError, match="soft reset"):
        export_nir(net, torch.zeros(1, N_IN))


def test_framework_without_exporter_says_so(monkeypatch):
    """SpikingJelly before 2.0 had no ``nir_exchange``: simulated by hiding the module."""
    pytest.importorskip("spikingjelly")
    from importlib.metadata import version

    monkeypatch.setitem(sys.modules, "spikingjelly.activation_based.nir_exchange", None)
    net = build("spikingjelly")
    with pytest.raises(NoExporterError, match=rf"SpikingJelly {version('spikingjelly')} has no"):
        export_nir(net, torch.zeros(1, N_IN))


def test_no_or_mixed_framework_asks_for_framework():
    with pytest.raises(UnsupportedModuleError, match="found: none"):
        export_nir(nn.Sequential(nn.Linear(4, 2)), torch.zeros(1, 4))
    with pytest.raises(NoExporterError, match="no NIR exporter"):
        export_nir(nn.Sequential(nn.Linear(4, 2)), torch.zeros(1, 4), framework="lava")
    pytest.importorskip("snntorch")
    pytest.importorskip("spikingjelly")
    mixed = nn.Sequential(nn.Linear(4, 2), matched_lif("snntorch"), matched_lif("spikingjelly"))
    with pytest.raises(UnsupportedModuleError, match="snntorch, spikingjelly"):
        export_nir(mixed, torch.zeros(1, 4))
