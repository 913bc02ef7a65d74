"""Published learning rules, each a frozen dataclass of hyper-parameters over the kernels."""

from __future__ import annotations

from .base import GradientRule, LocalRule, PairView, RuleState, UpdateSink
from .decolle import DECOLLE
from .diehl_cook import DiehlCook
from .fast_and_deep import FastAndDeep, FirstSpikeLayer, FirstSpikeNetwork, fast_and_deep_loss
from .mozafari import RSTDP, MozafariSTDP, WinnerGatedSTDP
from .mstdp import MSTDP, MSTDPET
from .stdp import STDP, WeightBounds, WeightDependent
from .stllr import STLLR
from .triplet import TripletSTDP

__all__ = [
    "DECOLLE",
    "MSTDP",
    "MSTDPET",
    "RSTDP",
    "STDP",
    "STLLR",
    "DiehlCook",
    "FastAndDeep",
    "FirstSpikeLayer",
    "FirstSpikeNetwork",
    "GradientRule",
    "LocalRule",
    "MozafariSTDP",
    "PairView",
    "RuleState",
    "TripletSTDP",
    "UpdateSink",
    "WeightBounds",
    "WeightDependent",
    "WinnerGatedSTDP",
    "fast_and_deep_loss",
]
