"""Competition between neurons: winners-take-all, inhibition, homeostasis, normalisation.

Pure functions on tensors, vectorised over the batch. Layouts are ``[B, F, *spatial]``
(features first, then 0, 1 or 2 spatial dimensions) for one sample's neurons, and time-first
``[T, B, F, *spatial]`` for sequences.

* :func:`k_winners` and :func:`pointwise_inhibition` follow SpykeTorch (Mozafari et al. 2019):
  the order is the earliest first spike, then the larger potential at that spike.
* :func:`lateral_inhibition` is the soft winner-take-all of Diehl & Cook 2015.
* :func:`adaptive_threshold` is Diehl & Cook's homeostatic theta.
* :func:`normalize_weights_` rescales each neuron's input weights to a fixed sum.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InputError


def first_spike_times(spikes: Tensor, start: int = 0) -> Tensor:
    """Index of each neuron's first spike in a time-first sequence, ``inf`` if it never spiked.

    Args:
        spikes: ``[T, B, ...]`` spikes (any nonzero value is a spike).
        start: the time of ``spikes[0]`` (added to every index).

    Returns:
        ``[B, ...]`` float times.

    Example:
        >>> first_spike_times(torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), start=10)
        tensor([11., inf])
    """
    fired = spikes != 0
    steps = spikes.shape[0]
    index = torch.arange(steps, device=spikes.device).view(-1, *([1] * (spikes.dim() - 1)))
    first = torch.where(fired, index, steps).amin(0)
    dtype = spikes.dtype if spikes.dtype.is_floating_point else torch.float32
    out = first.to(dtype) + start
    return out.masked_fill_(first == steps, math.inf)


def value_at_first_spike(values: Tensor, spikes: Tensor) -> Tensor:
    """``values`` at each neuron's first spike (0 where it never spiked).

    Args:
        values: ``[T, B, ...]`` (e.g. the membrane potential).
        spikes: ``[T, B, ...]`` spikes.

    Returns:
        ``[B, ...]``.

    Example:
        >>> spikes = torch.tensor([[0.0], [1.0], [1.0]])
        >>> value_at_first_spike(torch.tensor([[0.5], [2.0], [3.0]]), spikes)
        tensor([2.])
    """
    fired = spikes != 0
    steps = spikes.shape[0]
    index = torch.arange(steps, device=spikes.device).view(-1, *([1] * (spikes.dim() - 1)))
    first = torch.where(fired, index, steps).amin(0)
    gathered = values.gather(0, first.clamp(max=steps - 1).unsqueeze(0)).squeeze(0)
    return gathered.masked_fill(first == steps, 0.0)


def _check_layout(first_time: Tensor, potential: Tensor, name: str) -> None:
    if first_time.dim() < 2:
        raise InputError(
            f"{name}: expected [B, F, *spatial] first-spike times, got shape "
            f"{tuple(first_time.shape)}"
        )
    if first_time.dim() > 4:
        raise InputError(
            f"{name}: at most 2 spatial dimensions are supported, got shape "
            f"{tuple(first_time.shape)} ([B, F, *spatial])"
        )
    if potential.shape != first_time.shape:
        raise InputError(
            f"{name}: potential {tuple(potential.shape)} and first-spike times "
            f"{tuple(first_time.shape)} must have the same shape"
        )


def k_winners(first_time: Tensor, potential: Tensor, k: int, radius: int | None = None) -> Tensor:
    """k-winners-take-all with inhibition radius (Mozafari et al. 2019; SpykeTorch).

    Per sample, winners are chosen one at a time among the neurons that spiked and are not yet
    inhibited: the earliest first spike wins; among equally early ones, the larger potential at
    that spike; among equal potentials, the lowest flat index ``(feature, y, x)``. Each winner
    inhibits its whole feature map and, with a ``radius`` r, every feature at the positions
    within the ``(2r + 1)^d`` window around it (Chebyshev distance <= r). At most ``k`` winners;
    fewer when the candidates run out.

    Vectorised over the batch; the loop runs over the ``k`` choices.

    Args:
        first_time: ``[B, F, *spatial]`` first-spike times (``inf``: did not spike).
        potential: ``[B, F, *spatial]`` potential at the first spike (the tie-breaker).
        k: number of winners per sample, ``1 <= k <= F``.
        radius: inhibition radius in positions; None inhibits only the winner's feature map
            (needed when there are no spatial dimensions).

    Returns:
        ``[B, F, *spatial]`` bool, True at the winners.

    Raises:
        InputError: ``k`` outside ``[1, F]``, a radius without spatial dimensions, bad shapes.

    Example:
        >>> # 2 features with the same spikes on 4 positions: (feature 0, position 2) wins
        >>> # (earliest, larger potential) and inhibits feature 0 and positions 1-3; then
        >>> # (feature 1, position 0)
        >>> time = torch.tensor([[[2.0, 1.0, 1.0, 5.0]]])
        >>> potential = torch.tensor([[[9.0, 3.0, 4.0, 1.0]]])
        >>> k_winners(time.expand(1, 2, 4), potential.expand(1, 2, 4), k=2, radius=1).int()
        tensor([[[0, 0, 1, 0],
                 [1, 0, 0, 0]]], dtype=torch.int32)
    """
    _check_layout(first_time, potential, "k_winners")
    batch, features = first_time.shape[:2]
    spatial = tuple(first_time.shape[2:])
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= features:
        raise InputError(
            f"k_winners: k={k!r} must be an int in [1, {features}] (the number of features: "
            "each winner removes its whole feature map)"
        )
    if radius is not None:
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
            raise InputError(f"k_winners: radius must be None or an int >= 0, got {radius!r}")
        if not spatial:
            raise InputError(
                "k_winners: an inhibition radius needs spatial dimensions ([B, F, H, W] or "
                "[B, F, L]); use radius=None for neurons without them (Linear layers)"
            )
    device = first_time.device
    positions = math.prod(spatial)
    time = first_time.reshape(batch, features, positions)
    score = potential.reshape(batch, -1)
    inf = torch.tensor(math.inf, dtype=time.dtype, device=device)
    # the candidates' times; inhibited neurons are set to inf (in a copy)
    pending = torch.where(torch.isfinite(time), time, inf)
    winners = torch.zeros(batch, features * positions, dtype=torch.bool, device=device)
    coords = []  # per position only: the window test costs [B, positions], not [B, F * P]
    rest = torch.arange(positions, device=device)
    for size in reversed(spatial):
        coords.append(rest % size)
        rest = rest // size
    rows = torch.arange(batch, device=device)
    flat_pending = pending.view(batch, -1)
    for _ in range(k):
        earliest = flat_pending.amin(1, keepdim=True)
        candidates = flat_pending == earliest  # inf == inf: no candidate left (checked below)
        best = torch.where(candidates, score, -inf).argmax(1)
        valid = torch.isfinite(earliest.squeeze(1))
        winners[rows, best] |= valid
        feature = best // positions
        pending[rows[valid], feature[valid]] = inf
        if radius is not None:
            position = best % positions
            near = torch.ones(batch, positions, dtype=torch.bool, device=device)
            for coord in coords:
                near &= (coord.unsqueeze(0) - coord[position].unsqueeze(1)).abs() <= radius
            pending.masked_fill_((near & valid.unsqueeze(1)).unsqueeze(1), math.inf)
    return winners.view(first_time.shape)


def pointwise_inhibition(first_time: Tensor, potential: Tensor) -> Tensor:
    """One feature per position: the earliest spike, ties by the larger potential (SpykeTorch).

    Args:
        first_time: ``[B, F, *spatial]`` first-spike times (``inf``: did not spike).
        potential: ``[B, F, *spatial]`` potential at the first spike.

    Returns:
        ``[B, F, *spatial]`` bool: at each position at most one True, the surviving feature (ties
        in both time and potential go to the lowest feature index).

    Example:
        >>> time = torch.tensor([[[1.0, 0.0], [1.0, math.inf], [0.0, math.inf]]])  # B, F=3, 2
        >>> potential = torch.tensor([[[5.0, 2.0], [7.0, 0.0], [1.0, 0.0]]])
        >>> pointwise_inhibition(time, potential).int()
        tensor([[[0, 1],
                 [0, 0],
                 [1, 0]]], dtype=torch.int32)
    """
    _check_layout(first_time, potential, "pointwise_inhibition")
    fired = torch.isfinite(first_time)
    inf = torch.tensor(math.inf, dtype=first_time.dtype, device=first_time.device)
    earliest = torch.where(fired, first_time, inf).amin(1, keepdim=True)
    candidates = fired & (first_time == earliest)
    best = torch.where(candidates, potential, -inf).argmax(1, keepdim=True)
    keep = torch.zeros_like(candidates).scatter_(1, best, True)
    return keep & candidates


def lateral_inhibition(spikes: Tensor, strength: float, dim: int = 1) -> Tensor:
    """Input of a soft winner-take-all: minus every other neuron's spikes times ``strength``.

    Diehl & Cook 2015's excitatory -> inhibitory -> all-other-excitatory loop, collapsed into one
    step: neuron ``j`` receives ``-strength * sum_{i != j} s_i`` (subtract nothing from itself).

    Args:
        spikes: spikes with the competing neurons along ``dim`` (e.g. ``[B, F]``).
        strength: inhibition per spike (positive inhibits).
        dim: the competing axis.

    Returns:
        The input current to add to each neuron (non-positive for positive ``strength``).

    Example:
        >>> lateral_inhibition(torch.tensor([[1.0, 0.0, 1.0]]), 17.0)
        tensor([[-17., -34., -17.]])
    """
    return (spikes - spikes.sum(dim, keepdim=True)) * strength


def adaptive_threshold(
    theta: Tensor, spikes: Tensor, theta_plus: float, decay: float = 1.0
) -> Tensor:
    """Homeostatic threshold: ``theta[t] = decay theta[t-1] + theta_plus n[t]`` over a sequence.

    ``n[t]`` is each neuron's number of spikes at step ``t`` summed over the batch (the samples
    of a batch stand for examples presented one after another), so ``n`` spikes in total raise
    ``theta`` by ``theta_plus * n`` when ``decay = 1``. Evaluated in closed form
    (``theta[T] = decay^T theta[0] + theta_plus sum_t decay^(T-1-t) n[t]``).

    Args:
        theta: ``[*features]`` threshold offsets before the sequence.
        spikes: ``[T, B, *features]`` spikes.
        theta_plus: increase per spike.
        decay: per-step decay ``exp(-1 / tau_theta)``.

    Returns:
        ``[*features]`` the new offsets (a new tensor).

    Example:
        >>> adaptive_threshold(torch.zeros(2), torch.ones(3, 4, 2), 0.05)
        tensor([0.6000, 0.6000])
    """
    steps = spikes.shape[0]
    counts = spikes.to(theta.dtype).sum(1).reshape(steps, -1)
    if decay == 1.0:
        increase = counts.sum(0)
        return theta + theta_plus * increase.view(theta.shape)
    weights = decay ** torch.arange(steps - 1, -1, -1, dtype=theta.dtype, device=theta.device)
    increase = weights @ counts
    return theta * decay**steps + theta_plus * increase.view(theta.shape)


def normalize_weights_(weight: Tensor, target: float) -> Tensor:
    """Rescale each post-synaptic neuron's input weights, in place, to sum to ``target``.

    ``weight[j] *= target / sum(weight[j])`` for every output unit ``j`` (a Linear row, a Conv
    kernel); units whose weights sum to 0 are left unchanged. Diehl & Cook 2015 rescale to 78
    before every example.

    Args:
        weight: ``[out, ...]`` weight.
        target: the sum each unit's weights should have.

    Returns:
        ``weight``.

    Example:
        >>> normalize_weights_(torch.tensor([[1.0, 3.0], [0.0, 0.0]]), 2.0)
        tensor([[0.5000, 1.5000],
                [0.0000, 0.0000]])
    """
    sums = weight.reshape(weight.shape[0], -1).sum(1)
    scale = torch.where(sums != 0, target / sums, torch.ones_like(sums))
    return weight.mul_(scale.view(-1, *([1] * (weight.dim() - 1))))
