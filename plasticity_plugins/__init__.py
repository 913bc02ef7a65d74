"""plasticity_plugins: local learning rules for snnTorch, SpikingJelly and Norse models.

The framework computes the forward pass; the rule owns the weight update::

    handle = plasticity_plugins.attach(model, plasticity_plugins.rules.STDP())

See the README for the quick start and :func:`attach` for the details.
"""

from __future__ import annotations

from .attach import AttachHandle, attach, is_attached
from .errors import (
    AttachError,
    InputError,
    MissingFrameworkError,
    PlasticityError,
    SequenceResetWarning,
    StateError,
    UnsupportedFrameworkVersionError,
    UnsupportedModuleError,
)
from .nir import export_nir

__version__ = "0.1.0"

__all__ = [
    "AttachError",
    "AttachHandle",
    "InputError",
    "MissingFrameworkError",
    "PlasticityError",
    "SequenceResetWarning",
    "StateError",
    "UnsupportedFrameworkVersionError",
    "UnsupportedModuleError",
    "__version__",
    "attach",
    "export_nir",
    "is_attached",
]
