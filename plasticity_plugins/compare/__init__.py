"""The comparison behind ``plasticity-plugins compare``: rules x frameworks on the same data.

See :mod:`.runner` for what is measured, :mod:`.methods` for the methods and how their accuracy
is defined, :mod:`.frameworks` for the network, :mod:`.report` for the output files.
"""

from __future__ import annotations

from .frameworks import KITS, FrameworkKit
from .methods import ELSEWHERE, METHODS, Method
from .runner import CompareConfig, Comparison, RunResult

__all__ = [
    "ELSEWHERE",
    "KITS",
    "METHODS",
    "CompareConfig",
    "Comparison",
    "FrameworkKit",
    "Method",
    "RunResult",
]
