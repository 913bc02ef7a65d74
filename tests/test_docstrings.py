"""Every ``Example:`` in the package's docstrings runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import plasticity_plugins
import plasticity_plugins.adapters

# adapters/ is installed as plasticity_plugins.adapters from its own directory, which an editable
# install does not put on plasticity_plugins.__path__: walked on its own
MODULES = sorted(
    {
        info.name
        for package in (plasticity_plugins, plasticity_plugins.adapters)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
        if not info.name.endswith("__main__")
    }
    | {plasticity_plugins.adapters.__name__}
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
