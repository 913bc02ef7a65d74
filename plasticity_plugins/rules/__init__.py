"""Published learning rules, each a frozen dataclass of hyper-parameters over the kernels."""

from __future__ import annotations

from .base import GradientRule, LocalRule, PairView, RuleState, UpdateSink
from .decolle import DECOLLE
from .stdp import STDP
from .stllr import STLLR

__all__ = [
    "DECOLLE",
    "STDP",
    "STLLR",
    "GradientRule",
    "LocalRule",
    "PairView",
    "RuleState",
    "UpdateSink",
]
