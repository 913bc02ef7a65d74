"""Published learning rules, each a frozen dataclass of hyper-parameters over the kernels."""

from __future__ import annotations

from .base import LocalRule, PairView, RuleState, UpdateSink
from .stdp import STDP

__all__ = ["STDP", "LocalRule", "PairView", "RuleState", "UpdateSink"]
