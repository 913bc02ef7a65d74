"""Competition between neurons: winners-take-all, inhibition, homeostasis, normalisation.

Pure functions on tensors, vectorised over the batch. Layouts are ``[B, F, *spatial]``
(features first, then 0, 1 or 2 spatial dimensions) for one sample's neurons, and time-first
``[T, B, F, *spatial]`` for sequences.

* :func:`k_winners` and :func:`pointwise_inhibition` follow SpykeTorch (Mozafari et al. 2019):
  the order is the earliest first spike, then the larger potential at that spike.
* :func:`lateral_inhibition` is the soft winner-take-all of Diehl & Cook 2015;
  :func:`one_spike_per_step` lets one of the neurons that cross the threshold together spike.
* :func:`adaptive_threshold` is Diehl & Cook's homeostatic theta.
* :func:`normalize_weights_` rescales each neuron's input weights to a fixed sum.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ..errors import InputError
from ._extension_build import cpu_ops_available


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
    first = _first_index(spikes)
    dtype = spikes.dtype if spikes.dtype.is_floating_point else torch.float32
    out = first.to(dtype) + start
    return out.masked_fill_(first == spikes.shape[0], math.inf)


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
    steps = spikes.shape[0]
    first = _first_index(spikes)
    index = first.to(torch.long).clamp_(max=steps - 1)
    gathered = values.gather(0, index.unsqueeze(0)).squeeze(0)
    return gathered.masked_fill(first == steps, 0.0)


def _first_index(spikes: Tensor) -> Tensor:
    """``[B, ...]`` float32 index of each neuron's first nonzero step in ``[T, B, ...]``; T if none.

    float32, not int64: CPU min-reductions over int64 run several times slower (30x for a
    single step), and float32 holds every index exactly up to 2^24 steps.
    """
    steps = spikes.shape[0]
    index = torch.arange(steps, dtype=torch.float32, device=spikes.device)
    index = index.view(-1, *([1] * (spikes.dim() - 1)))
    return torch.where(spikes != 0, index, float(steps)).amin(0)


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


# table entries recomputed before each choice after the first: enough that the chosen one is
# nearly always among them (a miss costs one more round), few enough to stay cheap
_REFRESHED_BOUNDS = 4


def k_winners(first_time: Tensor, potential: Tensor, k: int, radius: int | None = None) -> Tensor:
    """k-winners-take-all with inhibition radius (Mozafari et al. 2019; SpykeTorch).

    Per sample, winners are chosen one at a time among the neurons that spiked and are not yet
    inhibited: the earliest first spike wins; among equally early ones, the larger potential at
    that spike; among equal potentials, the lowest flat index ``(feature, y, x)``. Each winner
    inhibits its whole feature map and, with a ``radius`` r, every feature at the positions
    within the ``(2r + 1)^d`` window around it (Chebyshev distance <= r). At most ``k`` winners;
    fewer when the candidates run out.

    Two implementations, identical to the one-image-at-a-time loop (``benchmarks/kwta.py``, the
    tests) and to each other:

    * CPU tensors: a C++ kernel (``cuda/k_winners.cpp``), built with the vector instructions of
      this CPU on first use (about 10-20 s, once: torch caches the build) and parallel over
      the batch with torch's intra-op threads. Per sample, one pass over the input fills a table
      of each feature's best candidate; a chosen entry whose position has been inhibited since
      is recomputed from its row. ``PLASTICITY_PLUGINS_CPU_EXT=0`` turns it off; a failed build
      warns once and falls back to the torch version.
    * Otherwise (CUDA tensors, or the fallback): torch ops vectorised over the batch, the loop
      running over the ``k`` choices. The same table as ``[B, F]``, updated lazily: before a
      choice the few largest entries are recomputed from their rows, and a chosen entry that
      was not is recomputed and the choice made again. Inputs with potentials <= 0, infinite
      or NaN (NaN ranks as +inf) take a slower exact path when they matter.

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
    features = first_time.shape[1]
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
    if first_time.numel() == 0:  # no sample or no position: no winner
        return torch.zeros_like(first_time, dtype=torch.bool)
    if first_time.device.type == "cpu" and potential.device.type == "cpu":
        if cpu_ops_available():
            return _k_winners_compiled(first_time, potential, k, radius)
    return _k_winners_torch(first_time, potential, k, radius)


def _k_winners_compiled(
    first_time: Tensor, potential: Tensor, k: int, radius: int | None
) -> Tensor:
    """:func:`k_winners` through the C++ kernel (validated CPU inputs)."""
    batch, features = first_time.shape[:2]
    spatial = tuple(first_time.shape[2:])
    positions = math.prod(spatial)
    # a common dtype that holds both exactly: the wider float, float32 for half / bfloat16,
    # float64 for integers and bool (as the torch version)
    dtype = torch.promote_types(first_time.dtype, potential.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    elif dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    time = first_time.detach().to(dtype).reshape(batch, features, positions)
    pot = potential.detach().to(dtype).reshape(batch, features, positions)
    if radius is None:
        windows = torch.empty(positions, 0, dtype=torch.long)
    else:
        windows = _window_table(spatial, radius, first_time.device)
    winners = torch.ops.plasticity_plugins_cpu.k_winners(time, pot, k, windows)
    return winners.view(first_time.shape)


def _k_winners_torch(first_time: Tensor, potential: Tensor, k: int, radius: int | None) -> Tensor:
    """:func:`k_winners` in torch ops, vectorised over the batch (validated inputs)."""
    batch, features = first_time.shape[:2]
    spatial = tuple(first_time.shape[2:])
    device = first_time.device
    positions = math.prod(spatial)
    time, pot = first_time, potential
    if not time.dtype.is_floating_point:
        time = time.double()
    if not pot.dtype.is_floating_point:
        pot = pot.double()
    time = time.reshape(batch, features, positions)
    pot = pot.reshape(batch, features, positions)
    tmin = time.amin(2)
    if not bool((tmin > -math.inf).all()):  # a NaN or -inf time somewhere
        time = torch.where(torch.isfinite(time), time, math.inf)  # NaN, -inf: did not spike
        tmin = time.amin(2)
    # The potential at each feature's earliest spikes, 0 elsewhere. Per feature, (tmin, max of
    # the key over the unblocked positions) is an upper bound of its best (time, potential) in
    # the k-WTA order, and exact when that max is in (0, inf): only then is it used as is.
    key = torch.le(time, tmin.unsqueeze(2), out=torch.empty_like(pot)).mul_(pot)
    flat_key = key.view(batch * features, positions)
    base = torch.arange(0, batch * features, features, device=device)
    allowed = None
    if radius is not None:
        allowed = torch.ones(batch, 1, positions, dtype=key.dtype, device=device)
        windows = _window_table(spatial, radius, device)
    chosen_f, chosen_p, earliest = [], [], []
    pmax = key.amax(2)
    refresh = min(_REFRESHED_BOUNDS, features)
    for j in range(k):
        tbest = tmin.amin(1, keepdim=True)
        candidate = tmin == tbest
        done_sample = tbest.squeeze(1) == math.inf  # no candidate left
        blocked = allowed if j > 0 else None  # None: the table is exact
        if blocked is not None:
            blocked_rows = blocked.view(batch, positions)
            # the windows only lower a feature's best, so pmax stays an upper bound; refresh
            # the few largest bounds, and any other bound that gets chosen (exact marks them)
            top = torch.where(candidate, pmax, -math.inf).topk(refresh, 1).indices
            rows = flat_key.index_select(0, (base.unsqueeze(1) + top).view(-1))
            pmax.scatter_(1, top, rows.view(batch, refresh, positions).mul_(blocked).amax(2))
            exact = torch.zeros(batch, features, dtype=torch.bool, device=device)
            exact.scatter_(1, top, True)
        while True:
            sbest, feature = torch.where(candidate, pmax, -math.inf).max(1)
            # a choice stands when its bound is exact: in (0, inf) and, with windows, fresh
            # (samples with no candidate left pass); else it is made exact and made again
            bound = torch.where(done_sample, 1.0, sbest)
            if blocked is not None:
                stale = exact.gather(1, feature.unsqueeze(1)).squeeze(1)
                stale.logical_or_(done_sample).logical_not_()
                bound.masked_fill_(stale, -1.0)
            if bool(bound.log_().isfinite().all()):
                row = flat_key.index_select(0, base + feature)
                if blocked is not None:
                    row.mul_(blocked_rows)
                position = torch.eq(row, sbest.unsqueeze(1), out=row).argmax(1)
                break
            if blocked is not None and bool(stale.any()):
                row = flat_key.index_select(0, base + feature).mul_(blocked_rows)
                pmax.scatter_(1, feature.unsqueeze(1), row.amax(1, keepdim=True))
                exact.scatter_(1, feature.unsqueeze(1), True)
                continue
            done = _exact_choice(time, pot, key, tmin, pmax, allowed, tbest)
            if done is not None:
                feature, position = done
                break
            tbest = tmin.amin(1, keepdim=True)
            candidate = tmin == tbest
            done_sample = tbest.squeeze(1) == math.inf
        chosen_f.append(feature)
        chosen_p.append(position)
        earliest.append(tbest)
        tmin.scatter_(1, feature.unsqueeze(1), math.inf)  # the winner's feature map is out
        if j < k - 1 and allowed is not None:
            allowed.view(batch, positions).scatter_(1, windows[position], 0.0)
    chosen = torch.stack(chosen_f, 1).mul_(positions).add_(torch.stack(chosen_p, 1))
    found = torch.cat(earliest, 1) < math.inf
    # a sample that ran out of candidates repeats its first choice (False if it had none)
    chosen = torch.where(found, chosen, chosen[:, :1])
    found = torch.where(found, found, found[:, :1])
    winners = torch.zeros(batch, features * positions, dtype=torch.bool, device=device)
    winners.scatter_(1, chosen, found)
    return winners.view(first_time.shape)


@functools.lru_cache(maxsize=32)
def _window_table(spatial: tuple[int, ...], radius: int, device: torch.device) -> Tensor:
    """``[P, (2r + 1)^d]``: the flat positions within Chebyshev distance ``r`` of each position
    (clamped at the borders, so a window near one repeats positions, which is harmless)."""
    positions = math.prod(spatial)
    flat = torch.zeros(positions, 1, dtype=torch.long, device=device)
    rest = torch.arange(positions, device=device)
    stride = 1
    span = torch.arange(-radius, radius + 1, device=device)
    for size in reversed(spatial):
        coord = (rest % size).unsqueeze(1) + span
        rest = rest // size
        near = coord.clamp_(0, size - 1).mul_(stride)
        flat = (flat.unsqueeze(2) + near.unsqueeze(1)).flatten(1)
        stride *= size
    return flat


def _exact_choice(
    time: Tensor,
    pot: Tensor,
    key: Tensor,
    tmin: Tensor,
    pmax: Tensor,
    allowed: Tensor | None,
    tbest: Tensor,
) -> tuple[Tensor, Tensor] | None:
    """k-WTA's slow path: the exact value of each sample's chosen feature.

    Returns (feature, position) when every choice stands; otherwise updates the table (tmin,
    pmax) and the key rows of the chosen features, and returns None (choose again). Handles
    potentials <= 0, infinite or NaN (NaN ranks as +inf) and a feature whose earliest spikes
    were all inhibited (its next spike time takes over).
    """
    rows = torch.arange(time.shape[0], device=time.device)
    valid = tbest < math.inf
    pmax.nan_to_num_(nan=math.inf, posinf=math.inf, neginf=-math.inf)  # 0 * inf in the key
    cand = tmin == tbest
    score = torch.where(cand, pmax, -math.inf)
    sbest = score.amax(1, keepdim=True)
    feature = (cand & (score == sbest)).to(torch.uint8).max(1).indices  # first, also for -inf
    t_row = time[rows, feature]
    if allowed is not None:
        t_row = t_row.masked_fill(allowed.squeeze(1) == 0, math.inf)
    earliest = t_row.amin(1, keepdim=True)
    c_row = (t_row == earliest) & (earliest < math.inf)
    p_row = pot[rows, feature].nan_to_num(nan=math.inf, posinf=math.inf, neginf=-math.inf)
    s_row = torch.where(c_row, p_row, -math.inf)
    best = s_row.amax(1, keepdim=True)
    position = (c_row & (s_row == best)).to(torch.uint8).max(1).indices
    stands = (earliest == tbest) & (best == sbest)
    if bool((stands | ~valid).all()):
        return feature, position
    # update the samples that have candidates (never revive a removed feature), then again
    f1 = feature.unsqueeze(1)
    tmin.scatter_(1, f1, torch.where(valid, earliest, tmin.gather(1, f1)))
    pmax.scatter_(1, f1, torch.where(valid, best, pmax.gather(1, f1)))
    fresh = torch.le(t_row, earliest).to(key.dtype).mul_(pot[rows, feature])
    if allowed is not None:
        fresh.mul_(allowed.squeeze(1))
    key[rows, feature] = torch.where(valid, fresh, key[rows, feature])
    return None


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


def one_spike_per_step(
    spikes: Tensor,
    excess: Tensor | None = None,
    feature_dims: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mask keeping at most one spike per sample and step: the one furthest over threshold.

    When several excitatory neurons cross the threshold within one step, their order is below
    the step's resolution and lateral inhibition, one step later, cannot choose between them.
    This lets one of them spike (BindsNET's ``one_spike`` of its Diehl & Cook neurons, which
    picks at random): with ``excess`` (``u - threshold``) the neuron with the largest excess,
    which in continuous time would have crossed first at equal input; without it, one chosen
    uniformly at random. The others' own reset is unaffected (the mask acts on the output).
    Hand it to an adapter as a spike mask (``adapter.set_spike_mask(one_spike_per_step)``:
    adapters call it with each call's spikes and excess).

    Args:
        spikes: ``[..., *features]`` spikes; the last ``feature_dims`` dimensions are the
            competing neurons, every leading index (time, batch) chooses on its own.
        excess: membrane minus threshold, shaped as ``spikes`` (equal excesses: the lowest
            index wins); None: choose at random.
        feature_dims: number of trailing feature dimensions (1 for ``[B, F]``, 3 for
            ``[B, C, H, W]``).
        generator: random generator for the random choice (on ``spikes``' device).

    Returns:
        A 0/1 mask of ``spikes``' shape and dtype with at most one 1 per leading index, on a
        neuron that spiked.

    Example:
        >>> spikes = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
        >>> excess = torch.tensor([[0.2, 3.0, 0.5], [-1.0, -2.0, -3.0], [0.4, 0.1, 0.0]])
        >>> one_spike_per_step(spikes, excess)
        tensor([[0., 0., 1.],
                [0., 0., 0.],
                [0., 1., 0.]])
        >>> one_spike_per_step(spikes).sum(1)  # at random
        tensor([1., 0., 1.])
    """
    if not 1 <= feature_dims <= spikes.dim():
        raise InputError(
            f"one_spike_per_step: feature_dims={feature_dims} must lie in [1, {spikes.dim()}] "
            f"for spikes of shape {tuple(spikes.shape)}"
        )
    if excess is not None and excess.shape != spikes.shape:
        raise InputError(
            f"one_spike_per_step: excess {tuple(excess.shape)} must have the shape of the "
            f"spikes {tuple(spikes.shape)}"
        )
    fired = (spikes != 0).flatten(-feature_dims)
    if excess is None:
        # i.i.d. uniform keys, lifted by 1 where a neuron spiked: the argmax is a spiking
        # neuron (if any), uniformly chosen among them
        keys = torch.rand(fired.shape, generator=generator, device=spikes.device).add_(fired)
    else:
        keys = excess.flatten(-feature_dims).masked_fill(~fired, -math.inf)
    winner = keys.argmax(-1, keepdim=True)
    mask = torch.zeros(fired.shape, dtype=spikes.dtype, device=spikes.device)
    mask.scatter_(-1, winner, fired.any(-1, keepdim=True).to(spikes.dtype))
    return mask.view(spikes.shape)


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
