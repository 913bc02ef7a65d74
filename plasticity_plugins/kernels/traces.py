"""Exponential spike traces.

Two conventions, both with the exact decay ``d = exp(-dt / tau)`` per step:

* all-to-all (additive): every spike adds 1, ``x[t] = d * x[t-1] + s[t]``, so the trace is the sum
  of ``d^(t - t_k)`` over all earlier spikes ``t_k <= t``;
* nearest-spike: a spike sets the trace to 1, ``x[t] = 1 if s[t] else d * x[t-1]``, so only the
  most recent spike counts.

Both include the current step's spike. Spikes may be graded (any real value); for the
nearest-spike trace any nonzero value counts as a spike and sets the trace to that value.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

TraceKind = Literal["all_to_all", "nearest"]

#: Largest per-step size (elements) for which CPU traces are vectorised over time.
_VECTORISE_NUMEL = 1024


def decay_factor(tau: float, dt: float = 1.0) -> float:
    """Exact per-step decay ``exp(-dt / tau)``; ``tau = inf`` gives 1 (no decay).

    Example:
        >>> round(decay_factor(20.0), 6)
        0.951229
    """
    if not tau > 0:
        raise ValueError(f"trace time constant must be > 0, got tau={tau}")
    return math.exp(-dt / tau)


def additive_trace_step(trace: Tensor, spikes: Tensor, decay: float) -> Tensor:
    """One step of the all-to-all trace: ``decay * trace + spikes`` (a new tensor).

    Example:
        >>> additive_trace_step(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), 0.5)
        tensor([1.5000, 1.0000])
    """
    return torch.add(spikes, trace, alpha=decay)


def nearest_trace_step(trace: Tensor, spikes: Tensor, decay: float) -> Tensor:
    """One step of the nearest-spike trace: ``spikes`` where nonzero, else ``decay * trace``.

    Example:
        >>> nearest_trace_step(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), 0.5)
        tensor([1., 0.])
    """
    return torch.where(spikes != 0, spikes, trace * decay)


def trace_step(trace: Tensor, spikes: Tensor, decay: float, kind: TraceKind) -> Tensor:
    """One step of a trace of the given ``kind`` (``"all_to_all"`` or ``"nearest"``)."""
    if kind == "all_to_all":
        return additive_trace_step(trace, spikes, decay)
    if kind == "nearest":
        return nearest_trace_step(trace, spikes, decay)
    raise ValueError(f"unknown trace kind {kind!r}; expected 'all_to_all' or 'nearest'")


def trace_sequence(
    spikes: Tensor, initial: Tensor, decay: float, kind: TraceKind = "all_to_all"
) -> Tensor:
    """Traces after each step of a time-first spike sequence.

    For long sequences of small tensors (on CUDA: any size) the traces are computed without a
    Python loop per step, where the per-step overhead would dominate: the nearest-spike trace
    from the index of each step's latest spike (a running maximum), the all-to-all trace as a
    scaled cumulative sum in chunks short enough that the scale ``decay^-j`` stays below
    ``2^10`` (float32 and narrower) or ``2^30`` (float64), so the result matches the
    step-by-step recursion to rounding. Otherwise the recursion runs step by step (on CPU,
    memory-bound steps over large tensors beat a cumulative sum).

    Args:
        spikes: ``[T, ...]`` spikes.
        initial: the trace before the first step, shape ``spikes.shape[1:]``.
        decay: per-step decay factor.
        kind: ``"all_to_all"`` or ``"nearest"``.

    Returns:
        ``[T, ...]`` with ``out[t]`` the trace including step ``t``'s spikes.

    Example:
        >>> trace_sequence(torch.tensor([[1.0], [0.0], [1.0]]), torch.zeros(1), 0.5)
        tensor([[1.0000],
                [0.5000],
                [1.2500]])
    """
    if kind not in ("all_to_all", "nearest"):
        raise ValueError(f"unknown trace kind {kind!r}; expected 'all_to_all' or 'nearest'")
    steps = spikes.shape[0]
    small = spikes.is_cuda or spikes[0].numel() <= _VECTORISE_NUMEL if steps else False
    if steps <= 4 or not small or not 0.0 < decay <= 1.0:
        return _trace_loop(spikes, initial, decay, kind)
    shape = (-1, *([1] * (spikes.dim() - 1)))
    dtype = torch.promote_types(spikes.dtype, initial.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    if kind == "nearest":
        time = torch.arange(steps, device=spikes.device).view(shape)
        last = torch.where(spikes != 0, time, -1).cummax(0).values
        latest = spikes.gather(0, last.clamp(min=0)).to(dtype)
        powers = decay ** (time - last).to(dtype)
        carried = initial.to(dtype) * decay ** (time + 1).to(dtype)
        return torch.where(last >= 0, latest * powers, carried).to(spikes.dtype)
    return _additive_sequence(spikes, initial.to(dtype), decay, dtype).to(spikes.dtype)


def _additive_sequence(spikes: Tensor, initial: Tensor, decay: float, dtype: torch.dtype) -> Tensor:
    """All-to-all traces in chunks of ``L`` steps: a scaled cumulative sum inside each chunk,
    then each chunk's carry-in from the traces at the ends of the earlier chunks."""
    steps = spikes.shape[0]
    rest = spikes.shape[1:]
    ratio = 30 if dtype == torch.float64 else 10
    length = steps if decay == 1.0 else 1 + int(ratio * math.log(2) / -math.log(decay))
    length = min(length, steps)
    chunks = -(-steps // length)
    blocks = spikes.to(dtype)
    if chunks * length != steps:
        blocks = torch.cat([blocks, blocks.new_zeros(chunks * length - steps, *rest)])
    blocks = blocks.view(chunks, length, *rest)
    ones = [1] * len(rest)
    index = torch.arange(length, dtype=torch.float64, device=spikes.device)
    up = (decay**-index).to(dtype).view(1, length, *ones)
    down = (decay**index).to(dtype).view(1, length, *ones)
    local = torch.cumsum(blocks * up, 1).mul_(down)  # traces from each chunk's own spikes
    ends = local[:, -1].reshape(chunks, -1)
    chunk_decay = decay**length
    if chunks <= 64:
        c = torch.arange(chunks, dtype=torch.float64, device=spikes.device)
        lag = c.view(-1, 1) - c.view(1, -1)
        kernel = torch.where(lag >= 0, chunk_decay ** lag.clamp(min=0), 0.0).to(dtype)
        carried = (chunk_decay ** (c + 1)).to(dtype).view(-1, 1)
        at_end = kernel @ ends + carried * initial.reshape(1, -1)
    else:
        at_end = torch.empty_like(ends)
        previous = initial.reshape(-1)
        for chunk in range(chunks):
            previous = torch.add(ends[chunk], previous, alpha=chunk_decay)
            at_end[chunk] = previous
    before = torch.cat([initial.reshape(1, -1), at_end[:-1]]).view(chunks, 1, *rest)
    traces = local.add_(before * (decay * down))
    return traces.view(chunks * length, *rest)[:steps]


def _trace_loop(spikes: Tensor, initial: Tensor, decay: float, kind: TraceKind) -> Tensor:
    """The step-by-step recursion (any decay)."""
    out = torch.empty_like(spikes)
    trace = initial
    for t in range(spikes.shape[0]):
        trace = trace_step(trace, spikes[t], decay, kind)
        out[t] = trace
    return out


def filtered_input_step(
    synaptic: Tensor | None,
    membrane: Tensor,
    x: Tensor,
    *,
    mem_decay: float,
    syn_decay: float | None = None,
    mem_gain: float = 1.0,
    syn_gain: float = 1.0,
    delayed: bool = False,
) -> tuple[Tensor | None, Tensor]:
    """One step of the input filtered by a neuron's sub-threshold kernel (no reset).

    This is the eligibility ``P`` of DECOLLE: the derivative of the membrane with respect to a
    weight, ignoring the reset::

        q[t] = syn_decay * q[t-1] + syn_gain * x[t]           (only with syn_decay)
        P[t] = mem_decay * P[t-1] + mem_gain * d[t]           d = q[t] (q[t-1] if delayed), or x[t]

    DECOLLE's own layer is ``syn_decay = beta, syn_gain = 1 - beta, mem_decay = alpha,
    mem_gain = 1 - alpha, delayed = True``; a framework neuron uses its NeuronSpec (gains 1 and
    ``input_gain``, not delayed).

    Args:
        synaptic: ``q[t-1]`` (None without a synaptic stage).
        membrane: ``P[t-1]``.
        x: this step's input.

    Returns:
        ``(q[t], P[t])``.

    Example:
        >>> q, p = filtered_input_step(torch.zeros(1), torch.zeros(1), torch.ones(1),
        ...                            mem_decay=0.5, syn_decay=0.5)
        >>> q, p
        (tensor([1.]), tensor([1.]))
    """
    if syn_decay is None:
        return None, torch.add(_scaled(x, mem_gain), membrane, alpha=mem_decay)
    previous = synaptic if synaptic is not None else torch.zeros_like(x)
    current = torch.add(_scaled(x, syn_gain), previous, alpha=syn_decay)
    drive = previous if delayed else current
    return current, torch.add(_scaled(drive, mem_gain), membrane, alpha=mem_decay)


def _scaled(x: Tensor, gain: float) -> Tensor:
    """``gain * x``; ``x`` itself for a gain of 1 (no copy on the per-step path)."""
    return x if gain == 1.0 else x * gain
