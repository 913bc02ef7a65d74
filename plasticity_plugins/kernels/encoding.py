"""Spike encodings of static inputs."""

from __future__ import annotations

import torch
from torch import Tensor


def poisson_rate(
    intensity: Tensor, steps: int, max_rate: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Bernoulli approximation of Poisson rate coding, time-first.

    ``s[t, ...] = 1`` with probability ``intensity * max_rate`` per step, independently.

    Args:
        intensity: values in [0, 1], any shape.
        steps: number of time steps ``T``.
        max_rate: spike probability per step at intensity 1.
        generator: optional RNG for reproducible spikes.

    Returns:
        ``[T, *intensity.shape]`` spikes with ``intensity``'s dtype.

    Example:
        >>> poisson_rate(torch.tensor([0.0, 1.0]), steps=3)
        tensor([[0., 1.],
                [0., 1.],
                [0., 1.]])
    """
    if not 0.0 <= max_rate <= 1.0:
        raise ValueError(f"max_rate is a probability per step, got {max_rate}")
    if intensity.numel() and (intensity.min() < 0 or intensity.max() > 1):
        low, high = intensity.min().item(), intensity.max().item()
        raise ValueError(f"intensity must lie in [0, 1], got values in [{low}, {high}]")
    probability = (intensity * max_rate).expand(steps, *intensity.shape)
    uniform = torch.rand(probability.shape, generator=generator, device=intensity.device)
    return (uniform < probability).to(intensity.dtype)
