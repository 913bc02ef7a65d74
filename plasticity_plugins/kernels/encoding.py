"""Spike encodings of static inputs: Poisson rate, intensity-to-latency, DoG preprocessing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


def intensity_to_latency(values: Tensor, steps: int, cumulative: bool = True) -> Tensor:
    """Intensity-to-latency coding (Mozafari et al. 2019; SpykeTorch ``Intensity2Latency``).

    Per sample, the ``n`` nonzero values are sorted in descending order (ties keep their flat
    order) and cut into bins of ``floor(n / T)``; the values of bin ``k`` spike at step ``k``.
    The ``n - T floor(n / T)`` smallest nonzero values and every zero never spike (with
    ``n < T`` nothing spikes), as in SpykeTorch. With ``cumulative`` (SpykeTorch's spike waves)
    a neuron keeps spiking at every step after its first; otherwise it spikes once.

    Args:
        values: ``[B, ...]`` nonnegative intensities; each sample is sorted over all its values.
        steps: the number of time steps ``T``.
        cumulative: spike waves (True) or single spikes (False).

    Returns:
        ``[T, B, ...]`` 0/1 spikes with ``values``' floating dtype.

    Example:
        >>> intensity_to_latency(torch.tensor([[0.2, 0.0, 0.9, 0.5, 0.7]]), steps=2)[:, 0]
        tensor([[0., 0., 1., 0., 1.],
                [1., 0., 1., 1., 1.]])
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"intensity_to_latency: steps must be a positive int, got {steps!r}")
    if values.dim() < 1:
        raise ValueError("intensity_to_latency: values must be [B, ...] (add a batch axis)")
    if values.numel() and values.min() < 0:
        raise ValueError(
            f"intensity_to_latency: values must be nonnegative, got min {values.min().item()}"
        )
    batch = values.shape[0]
    flat = values.reshape(batch, -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    )
    bin_size = (flat != 0).sum(1, keepdim=True) // steps
    bin_index = torch.where(bin_size > 0, rank // bin_size.clamp(min=1), steps)
    time = torch.arange(steps, device=flat.device).view(-1, 1, 1)
    fires = (bin_index.unsqueeze(0) <= time) if cumulative else (bin_index.unsqueeze(0) == time)
    dtype = values.dtype if values.dtype.is_floating_point else torch.float32
    return fires.to(dtype).reshape(steps, *values.shape)


def dog_kernel(
    size: int, sigma1: float, sigma2: float, dtype: torch.dtype = torch.float64
) -> Tensor:
    """A difference-of-Gaussians kernel with zero mean, scaled to a maximum of 1 (SpykeTorch).

    ``g(x, y) = (exp(-r^2 / (2 s1^2)) / s1^2 - exp(-r^2 / (2 s2^2)) / s2^2) / (2 pi)`` on the
    ``size x size`` grid centred at 0; then the mean is subtracted and the result divided by its
    maximum. ``sigma1 < sigma2`` is an ON-centre kernel, ``sigma1 > sigma2`` OFF-centre.

    Args:
        size: odd window size.
        sigma1: the centre Gaussian's width, in pixels.
        sigma2: the surround Gaussian's width, in pixels.
        dtype: output dtype (computed in float64; in float32 the sum is 0 only to the rounding
            of ``size^2`` values, about ``1e-6``).

    Returns:
        ``[size, size]`` kernel summing to 0 with maximum 1.

    Example:
        >>> k = dog_kernel(7, 7 / 9, 14 / 9)
        >>> round(float(k.sum()), 6), float(k.max()), float(k[3, 3])
        (0.0, 1.0, 1.0)
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"dog_kernel: size must be a positive odd int, got {size}")
    if not (sigma1 > 0 and sigma2 > 0) or sigma1 == sigma2:
        raise ValueError(
            f"dog_kernel: sigmas must be positive and different, got {sigma1}, {sigma2}"
        )
    half = size // 2
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    r2 = axis.view(-1, 1) ** 2 + axis.view(1, -1) ** 2
    g1 = torch.exp(-0.5 * r2 / sigma1**2) / sigma1**2
    g2 = torch.exp(-0.5 * r2 / sigma2**2) / sigma2**2
    dog = (g1 - g2) / (2 * math.pi)
    dog = dog - dog.mean()
    return (dog / dog.max()).to(dtype)


def dog_filters(sizes: tuple[int, ...] = (3, 7, 13), dtype: torch.dtype = torch.float32) -> Tensor:
    """The DoG filter bank of Mozafari et al. 2019: ON and OFF kernels for each size.

    For each size ``s``: ON with ``sigma = (s / 9, 2 s / 9)``, then OFF with the sigmas swapped,
    each zero-padded (centred) to the largest size.

    Args:
        sizes: odd window sizes.
        dtype: output dtype.

    Returns:
        ``[2 len(sizes), 1, max(sizes), max(sizes)]`` convolution weights.

    Example:
        >>> dog_filters().shape
        torch.Size([6, 1, 13, 13])
    """
    largest = max(sizes)
    bank = torch.zeros(2 * len(sizes), 1, largest, largest, dtype=dtype)
    for i, size in enumerate(sizes):
        pad = (largest - size) // 2
        window = slice(pad, pad + size)
        bank[2 * i, 0, window, window] = dog_kernel(size, size / 9, 2 * size / 9, dtype)
        bank[2 * i + 1, 0, window, window] = dog_kernel(size, 2 * size / 9, size / 9, dtype)
    return bank


def dog_preprocess(
    images: Tensor,
    sizes: tuple[int, ...] = (3, 7, 13),
    threshold: float = 50.0,
    normalization_radius: int = 8,
    scale: float = 255.0,
    eps: float = 1e-12,
) -> Tensor:
    """Mozafari et al. 2019's input stage: DoG filtering, threshold, local normalisation.

    ``images * scale`` (pixels in [0, 255]) are convolved with :func:`dog_filters` (zero
    padding, same size), responses below ``threshold`` are set to 0, and each map is divided by
    its local mean over the ``(2 r + 1)^2`` window (zero padded, divided by the full window
    size, plus ``eps``), as SpykeTorch's ``Filter`` and ``local_normalization``. Feed the result
    to :func:`intensity_to_latency` (``steps = 15`` in the paper).

    Args:
        images: ``[B, 1, H, W]`` or ``[B, H, W]`` grey images in [0, 1].
        sizes: DoG window sizes (6 maps for the default three).
        threshold: responses below it (in ``scale`` units) are zeroed.
        normalization_radius: ``r`` of the local-mean window (8: 17 x 17).
        scale: factor applied to ``images`` first.
        eps: added to the local mean.

    Returns:
        ``[B, 2 len(sizes), H, W]`` nonnegative feature maps.

    Example:
        >>> x = torch.zeros(1, 28, 28); x[0, 10:18, 10:18] = 1.0
        >>> features = dog_preprocess(x)
        >>> features.shape, bool((features >= 0).all()), bool((features > 0).any())
        (torch.Size([1, 6, 28, 28]), True, True)
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(
            f"dog_preprocess: expected [B, 1, H, W] or [B, H, W] images, got {tuple(images.shape)}"
        )
    dtype = images.dtype if images.dtype.is_floating_point else torch.float32
    bank = dog_filters(sizes, dtype).to(images.device)
    filtered = F.conv2d(images.to(dtype) * scale, bank, padding=max(sizes) // 2)
    filtered = torch.where(filtered < threshold, torch.zeros_like(filtered), filtered)
    length = 2 * normalization_radius + 1
    window = torch.full((1, 1, length, length), 1.0 / length**2, dtype=dtype, device=images.device)
    means = F.conv2d(
        filtered.reshape(-1, 1, *filtered.shape[2:]), window, padding=normalization_radius
    ).reshape(filtered.shape)
    return filtered / (means + eps)
