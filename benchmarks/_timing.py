"""Timing helpers shared by the STDP benchmarks: best-of-N milliseconds per time step.

Both time ``run(inputs)`` for a ``[T, ...]`` input sequence and divide by ``T``. The machines
these run on are shared, so a ratio between two methods is only meaningful when both were timed
in turns (:func:`interleaved_ms`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

Run = Callable[[torch.Tensor], None]


def _seconds_per_step(run: Run, inputs: torch.Tensor) -> float:
    start = time.perf_counter()
    run(inputs)
    return (time.perf_counter() - start) / inputs.shape[0]


def per_step_ms(run: Run, inputs: torch.Tensor, repeats: int, warmup_steps: int) -> float:
    """Best-of-``repeats`` ms per step of ``run(inputs)``, after one warm-up call on the first
    ``warmup_steps`` steps."""
    run(inputs[:warmup_steps])
    return 1e3 * min(_seconds_per_step(run, inputs) for _ in range(repeats))


def interleaved_rounds(
    runs: dict[str, tuple[Run, torch.Tensor]], repeats: int, warmup_steps: int
) -> dict[str, list[float]]:
    """ms per step of each ``(run, inputs)`` in each of ``repeats`` rounds, the runs taking
    turns within every round, so that the ratios between them hold while the load of a shared
    machine drifts. Each timed call follows a warm-up call of its own on the first
    ``warmup_steps`` steps (SpikingJelly's TorchScript functions re-specialise when another
    network ran in between)."""
    rounds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (run, inputs) in runs.items():
            run(inputs[:warmup_steps])
            rounds[name].append(1e3 * _seconds_per_step(run, inputs))
    return rounds


def interleaved_ms(
    runs: dict[str, tuple[Run, torch.Tensor]], repeats: int, warmup_steps: int
) -> dict[str, float]:
    """Best ms per step of each run over :func:`interleaved_rounds`."""
    return {
        name: min(times) for name, times in interleaved_rounds(runs, repeats, warmup_steps).items()
    }


def round_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """The ratio of two interleaved runs in each round (timed back to back)."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]
