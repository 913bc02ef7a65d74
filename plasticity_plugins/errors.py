"""Exceptions raised by plasticity_plugins.

Every error names the module (by its name in the model where known), the offending shape or
value, and what would have been accepted.
"""

from __future__ import annotations

from types import ModuleType


class PlasticityError(Exception):
    """Base class of every error this package raises on purpose."""


class MissingFrameworkError(PlasticityError, ImportError):
    """A framework adapter was needed but the framework is not installed (names the extra)."""


class UnsupportedFrameworkVersionError(PlasticityError, ImportError):
    """The installed framework's version is outside the range the adapter was written for."""


class UnsupportedModuleError(PlasticityError, TypeError):
    """A neuron or synapse type, or one of its configurations, that no adapter or rule handles."""


class AttachError(PlasticityError, RuntimeError):
    """attach() could not wire a rule to a model (attached twice, no pair found, ...)."""


class InputError(PlasticityError, ValueError):
    """A tensor of the wrong rank, shape, dtype or device, or with NaN / inf values."""


class StateError(PlasticityError, RuntimeError):
    """A call at the wrong moment: a step before reset, a sequence whose batch size changed."""


class SequenceResetWarning(UserWarning):
    """A neuron restarted from its initial state (the framework's own reset, a fresh state
    passed in) while the rules of a handle still carried traces: ``handle.reset()`` resets
    both. Filter it (``warnings.filterwarnings("ignore", category=SequenceResetWarning)``)
    where traces are meant to run on across the neurons' resets."""


def require_framework(name: str, extra: str | None = None) -> ModuleType:
    """Import a framework by name or raise :class:`MissingFrameworkError` naming the extra.

    Args:
        name: the framework's import name, e.g. ``"snntorch"``.
        extra: the pip extra that installs it (defaults to ``name``).

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingFrameworkError(
            f"{name} is not installed; install it with "
            f"`pip install 'plasticity-plugins[{extra or name}]'` ({exc})"
        ) from exc


def check_version(name: str, installed: str, minimum: str, below: str) -> None:
    """Raise :class:`UnsupportedFrameworkVersionError` unless ``minimum <= installed < below``."""
    from packaging.version import Version

    if not Version(minimum) <= Version(installed) < Version(below):
        raise UnsupportedFrameworkVersionError(
            f"{name} {installed} is not supported by plasticity_plugins; supported: "
            f">={minimum},<{below}. Install a supported version, e.g. "
            f"`pip install '{name}>={minimum},<{below}'`."
        )
