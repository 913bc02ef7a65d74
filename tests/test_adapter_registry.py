"""The adapter registry: built-ins come from the entry-point group, and a package can add one."""

from __future__ import annotations

import importlib
import sys
import textwrap
from importlib.metadata import entry_points

import pytest
import torch
from torch import nn

import plasticity_plugins
from plasticity_plugins.adapters import GROUP, adapter_for, available_frameworks, load_adapters
from plasticity_plugins.rules import STDP

TOY_FRAMEWORK = '''
import torch
from torch import nn


class IFNeuron(nn.Module):
    """A non-leaky integrate-and-fire neuron with reset to zero."""

    def __init__(self):
        super().__init__()
        self.v = None

    def forward(self, x):
        v = x if self.v is None else self.v + x
        spikes = (v > 1.0).to(x.dtype)
        self.v = v * (1 - spikes)
        return spikes
'''

TOY_ADAPTER = """
import torch
from plasticity_plugins.adapters.base import NeuronAdapter, NeuronObservation, NeuronSpec
import toyframework


class IFAdapter(NeuronAdapter):
    framework = "toyframework"
    neuron_types = (toyframework.IFNeuron,)

    @property
    def spec(self):
        return NeuronSpec("toyframework", "IFNeuron", 1.0, 1.0, 1.0, "zero", False)

    @property
    def multistep(self):
        return False

    def install(self, on_step):
        self._handle = self.module.register_forward_hook(
            lambda m, a, out: on_step(
                NeuronObservation(out.detach()[None], lambda: a[0][None], torch.ones_like)
            )
        )

    def uninstall(self):
        self._handle.remove()

    def reset(self):
        self.module.v = None

    def state_dict(self):
        return {} if self.module.v is None else {"v": self.module.v.detach().clone()}

    def load_state_dict(self, state):
        self.module.v = state.get("v")


ADAPTERS = (IFAdapter,)
"""


def test_builtin_adapters_are_registered_through_the_entry_point_group():
    names = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    assert names["snntorch"] == "plasticity_plugins.adapters.snntorch:ADAPTERS"
    assert names["spikingjelly"] == "plasticity_plugins.adapters.spikingjelly:ADAPTERS"
    assert names["norse"] == "plasticity_plugins.adapters.norse:ADAPTERS"
    for framework in ("snntorch", "spikingjelly", "norse"):
        assert load_adapters(framework), framework


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """A real installed distribution (dist-info on sys.path) declaring a fourth framework."""
    (tmp_path / "toyframework").mkdir()
    (tmp_path / "toyframework" / "__init__.py").write_text(textwrap.dedent(TOY_FRAMEWORK))
    (tmp_path / "toyframework_adapter.py").write_text(textwrap.dedent(TOY_ADAPTER))
    dist = tmp_path / "toyframework_adapter-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toyframework-adapter\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[{GROUP}]\ntoyframework = toyframework_adapter:ADAPTERS\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield importlib.import_module("toyframework")
    load_adapters.cache_clear()
    for name in ("toyframework", "toyframework_adapter"):
        sys.modules.pop(name, None)


def test_a_fourth_framework_plugs_in_without_touching_this_package(toy_package):
    assert "toyframework" in available_frameworks()
    net = nn.Sequential(nn.Linear(3, 2, bias=False), toy_package.IFNeuron())
    assert adapter_for(net[1]) is not None
    nn.init.constant_(net[0].weight, 0.6)
    handle = plasticity_plugins.attach(net, STDP(a_plus=1.0, a_minus=0.0))
    with torch.no_grad():
        for _ in range(4):
            net(torch.ones(1, 3))
    assert net[0].weight.grad.abs().sum() > 0
    handle.detach()
