"""Fast & Deep: exact gradient descent on first-spike times.

Göltz, Kriener et al., "Fast and energy-efficient neuromorphic deep learning with first-spike
times", Nat. Mach. Intell. 3, 823-835 (2021).

Every neuron is a current-based LIF neuron with exponential synapses that fires at most once
(only its first threshold crossing counts); its spike time is a closed-form function of its
input spike times and weights (:func:`plasticity_plugins.kernels.spike_time.first_spike_times`),
so a layered network of such neurons is a differentiable function from input times to output
times, trained by backpropagation with exact gradients. The class is the output neuron that
fires first.

Pieces (all framework-agnostic; a framework's spike raster converts to and from first-spike
times with :func:`spikes_to_times` / :func:`times_to_spikes`):

* :class:`FirstSpikeLayer`: weights ``[N_in (+ 1 bias), N_out]``; ``forward(times)`` gives the
  first spike time of every neuron (``+inf``: no spike). A bias input is a spike at a fixed time
  that every sample receives.
* :class:`FirstSpikeNetwork`: a stack of layers.
* :func:`fast_and_deep_loss`: with ``t`` the output times and ``n*`` the label neuron::

      L = -log softmax(-t / (xi tau_s))[n*] + alpha exp(t_n* / (beta tau_s))

  and ``L = 100`` (no gradient) where the label neuron does not fire; mean over the batch.
* Training aids of the reference implementation: a layer's ``max_dw_norm`` zeroes the weight
  update of a (sample, neuron) whose largest ``|dL/dw|`` exceeds it (the spike grazes the
  threshold: ``dT/dw`` diverges); :class:`WeightBumping` raises the input weights of silent
  neurons, instead of a gradient step, while too many of a layer's neurons stay silent.
* :class:`FastAndDeep`: the hyper-parameters (frozen), with the published sets for Yin-Yang and
  16x16 MNIST (:meth:`FastAndDeep.published`), and :func:`train_epoch` / :func:`evaluate`.

Example:
    >>> import torch
    >>> from plasticity_plugins.rules.fast_and_deep import FastAndDeep, fast_and_deep_loss
    >>> config = FastAndDeep.published("yinyang")
    >>> net = config.build(generator=torch.Generator().manual_seed(0))
    >>> times = config.encode(torch.tensor([[0.2, 0.7, 0.8, 0.3]]))  # t = 0.15 + 1.85 v
    >>> out = net(times)  # first spike time of each of the 3 output neurons
    >>> out.shape, bool(torch.isfinite(out).all())
    (torch.Size([1, 3]), True)
    >>> loss = fast_and_deep_loss(out, torch.tensor([1]))
    >>> loss.backward()
    >>> [tuple(layer.weight.grad.shape) for layer in net.layers]
    [(5, 120), (121, 3)]
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from ..errors import InputError
from ..kernels.spike_time import SpikeTimeParams, first_spike_times

__all__ = [
    "EpochStats",
    "FastAndDeep",
    "FirstSpikeLayer",
    "FirstSpikeNetwork",
    "WeightBumping",
    "encode_times",
    "evaluate",
    "fast_and_deep_loss",
    "jitter_times",
    "predict",
    "spikes_to_times",
    "times_to_spikes",
    "train_epoch",
]


# ------------------------------------------------------------------------ hyper-parameters
@dataclass(frozen=True)
class FastAndDeep:
    """Hyper-parameters of a Fast & Deep network and its training (reference values: Yin-Yang).

    Attributes:
        layer_sizes: ``(N_inputs, N_hidden..., N_classes)``.
        bias_times: per layer (one entry per weight layer), the time of its bias spike, or
            None for no bias input.
        weight_init: per layer, ``(mean, std)`` of the normal initial weights (bias row too).
        neuron: the LIF neuron of every layer (default ``tau_m = tau_s = 1``, ``theta = 1``,
            ``E_l = 0``, ``g_l = 1``).
        xi: softmax temperature of the loss, in units of ``tau_s``.
        alpha: weight of the regulariser ``alpha exp(t_label / (beta tau_s))`` (pushes the label
            neuron to fire early).
        beta: time scale of the regulariser, in units of ``tau_s``.
        missing_loss: per-sample loss where the label neuron does not fire.
        max_dw_norm: a (sample, neuron) whose largest ``|dL/dw_i|`` exceeds this contributes no
            weight update (None: off).
        max_missing_spikes: per layer, the largest tolerated fraction of silent
            (sample, neuron) pairs in a batch before weights are bumped (one value: all layers).
        bump_value: initial weight bump (None: no weight bumping).
        bump_exponential: double the bump while the same layer needs bumping in a row.
        bump_targeted: bump only the neurons that were silent for some sample of the batch.
        early: input time of the value 0 (:meth:`encode`).
        late: input time of the value 1.
        input_noise: std of the Gaussian noise added to the input times during training
            (:func:`jitter_times`; 0: none).
        lr: Adam learning rate.
        lr_step: StepLR step size (epochs).
        lr_gamma: StepLR factor.
        batch_size: training batch size.
        epochs: training epochs.

    Example:
        >>> config = FastAndDeep.published("mnist16")
        >>> config.layer_sizes, config.lr, config.batch_size, config.input_noise
        ((256, 128, 10), 0.003, 50, 0.3)
        >>> FastAndDeep.published("yinyang", epochs=10).epochs
        10
    """

    layer_sizes: tuple[int, ...] = (4, 120, 3)
    bias_times: tuple[float | None, ...] = (0.9, 0.9)
    weight_init: tuple[tuple[float, float], ...] = ((1.5, 0.8), (0.5, 0.8))
    neuron: SpikeTimeParams = field(default_factory=SpikeTimeParams)
    xi: float = 0.2
    alpha: float = 0.005
    beta: float = 1.0
    missing_loss: float = 100.0
    max_dw_norm: float | None = 0.2
    max_missing_spikes: tuple[float, ...] = (0.3, 0.0)
    bump_value: float | None = 0.0005
    bump_exponential: bool = True
    bump_targeted: bool = True
    early: float = 0.15
    late: float = 2.0
    input_noise: float = 0.0
    lr: float = 5e-3
    lr_step: int = 20
    lr_gamma: float = 0.95
    batch_size: int = 150
    epochs: int = 300

    def __post_init__(self) -> None:
        n_layers = len(self.layer_sizes) - 1
        if n_layers < 1 or any(int(n) != n or n < 1 for n in self.layer_sizes):
            raise InputError(
                f"FastAndDeep.layer_sizes must be (N_inputs, ..., N_classes) of positive ints, "
                f"got {self.layer_sizes}"
            )
        for name in ("bias_times", "weight_init"):
            if len(getattr(self, name)) != n_layers:
                raise InputError(
                    f"FastAndDeep.{name} needs one entry per weight layer ({n_layers}), got "
                    f"{getattr(self, name)}"
                )
        if len(self.max_missing_spikes) not in (1, n_layers):
            raise InputError(
                f"FastAndDeep.max_missing_spikes needs 1 or {n_layers} entries, got "
                f"{self.max_missing_spikes}"
            )
        if self.xi <= 0 or self.beta <= 0:
            raise InputError(f"FastAndDeep needs xi > 0 and beta > 0, got {self.xi}, {self.beta}")
        if self.max_dw_norm is not None and not self.max_dw_norm > 0:
            raise InputError(f"FastAndDeep.max_dw_norm must be > 0 or None, got {self.max_dw_norm}")
        if not self.late > self.early:
            raise InputError(f"FastAndDeep needs late > early, got {self.early}, {self.late}")
        if self.input_noise < 0:
            raise InputError(f"FastAndDeep.input_noise must be >= 0, got {self.input_noise}")

    @classmethod
    def published(cls, name: str, **overrides: Any) -> FastAndDeep:
        """The reference configuration ``"yinyang"`` or ``"mnist16"``, with ``overrides``.

        * ``"yinyang"``: 4 inputs (``(x, y, 1 - x, 1 - y)``, ``t = 0.15 + 1.85 v``) + bias spike
          at 0.9 -> 120 (+ bias at 0.9) -> 3; initial weights N(1.5, 0.8) (hidden) and
          N(0.5, 0.8) (output); Adam 5e-3, StepLR(20, 0.95), batch 150, 300 epochs; bumping when
          more than 30 % of the hidden or any of the output spikes are missing.
        * ``"mnist16"``: 256 -> 128 -> 10, no bias; initial weights N(0.1, 0.4) and N(0.6, 0.8);
          Adam 3e-3, StepLR(10, 0.9), batch 50, 200 epochs; input noise N(0, 0.3) on the times;
          bumping above 50 % missing spikes in either layer.

        Published test accuracies: Yin-Yang 95.9 +- 0.7 %, 16x16 MNIST 96.8 % (full data set).
        """
        presets: dict[str, dict[str, Any]] = {
            "yinyang": {},
            "mnist16": {
                "layer_sizes": (256, 128, 10),
                "bias_times": (None, None),
                "weight_init": ((0.1, 0.4), (0.6, 0.8)),
                "max_missing_spikes": (0.5, 0.5),
                "input_noise": 0.3,
                "lr": 3e-3,
                "lr_step": 10,
                "lr_gamma": 0.9,
                "batch_size": 50,
                "epochs": 200,
            },
        }
        if name not in presets:
            raise InputError(f"FastAndDeep.published: unknown {name!r}; use one of {list(presets)}")
        return replace(cls(), **{**presets[name], **overrides})

    def build(
        self,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> FirstSpikeNetwork:
        """A freshly initialised :class:`FirstSpikeNetwork` of this configuration."""
        return FirstSpikeNetwork(
            self.layer_sizes,
            bias_times=self.bias_times,
            weight_init=self.weight_init,
            params=self.neuron,
            max_dw_norm=self.max_dw_norm,
            device=device,
            dtype=dtype,
            generator=generator,
        )

    def encode(self, values: Tensor) -> Tensor:
        """Input times ``early + (late - early) v`` of values in [0, 1] (:func:`encode_times`)."""
        return encode_times(values, self.early, self.late)

    def loss(self, times: Tensor, labels: Tensor) -> Tensor:
        """:func:`fast_and_deep_loss` with this configuration's constants (mean over the batch)."""
        return fast_and_deep_loss(
            times,
            labels,
            tau_s=self.neuron.tau_s,
            xi=self.xi,
            alpha=self.alpha,
            beta=self.beta,
            missing_loss=self.missing_loss,
        )

    def optimizer(self, net: nn.Module) -> torch.optim.Adam:
        """Adam over the network's parameters with this learning rate."""
        return torch.optim.Adam(net.parameters(), lr=self.lr)

    def scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.StepLR:
        """StepLR(``lr_step``, ``lr_gamma``), stepped once per epoch."""
        return torch.optim.lr_scheduler.StepLR(optimizer, self.lr_step, self.lr_gamma)

    def bumping(self) -> WeightBumping | None:
        """A fresh :class:`WeightBumping` of this configuration (None if bumping is off)."""
        if self.bump_value is None:
            return None
        return WeightBumping(
            self.bump_value,
            self.max_missing_spikes,
            exponential=self.bump_exponential,
            targeted=self.bump_targeted,
        )


# ------------------------------------------------------------------------------ encodings
def encode_times(
    values: Tensor, early: float = 0.15, late: float = 2.0, silent_at_late: bool = False
) -> Tensor:
    """Linear time code of the reference: ``t = early + (late - early) v`` for ``v`` in [0, 1].

    Small values spike early. With ``silent_at_late`` the value 1 gives no spike (``+inf``), as
    the reference does for the white (after inversion) background pixels of MNIST.

    Raises:
        InputError: values outside [0, 1] or NaN, or a non-floating tensor.

    Example:
        >>> encode_times(torch.tensor([0.0, 0.5, 1.0]))
        tensor([0.1500, 1.0750, 2.0000])
        >>> encode_times(torch.tensor([0.0, 1.0]), silent_at_late=True)
        tensor([0.1500,    inf])
    """
    if not isinstance(values, Tensor) or not values.is_floating_point():
        raise InputError(f"encode_times: values must be a floating tensor, got {type(values)}")
    if values.numel() and not bool(((values >= 0) & (values <= 1)).all()):
        raise InputError("encode_times: values must lie in [0, 1] (and not be NaN)")
    times = early + (late - early) * values
    if silent_at_late:
        times = times.masked_fill(values == 1, math.inf)
    return times


def jitter_times(times: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Training noise of the reference: ``t + N(0, std)``, negative results mirrored (``|t|``).

    Silent inputs (``+inf``) stay silent.

    Example:
        >>> rng = torch.Generator().manual_seed(0)
        >>> t = jitter_times(torch.tensor([0.0, 1.0, math.inf]), 0.3, rng)
        >>> bool((t[:2] >= 0).all()), t[2].item()
        (True, inf)
    """
    if std == 0:
        return times
    noise = torch.randn(times.shape, generator=generator, dtype=times.dtype)
    return (times + noise.to(times.device) * std).abs()


def spikes_to_times(spikes: Tensor, dt: float, offset: float = 0.0) -> Tensor:
    """First-spike times ``[B, N]`` of a time-first spike raster ``[T, B, N]`` (any ``[T, ...]``).

    Step ``k`` is time ``offset + k dt``; a neuron that never spikes gets ``+inf``. Later spikes
    of a neuron are ignored (only the first counts, as in Fast & Deep). This is how the output of
    snnTorch, SpikingJelly (multi-step) or Norse, all time-first, enters a
    :class:`FirstSpikeLayer`.

    Args:
        spikes: ``[T, ...]`` raster, non-zero where a neuron spikes.
        dt: time step (``> 0``).
        offset: time of step 0.

    Returns:
        Times ``spikes.shape[1:]``, in ``spikes``' floating dtype (float32 for integer or bool
        rasters).

    Raises:
        InputError: a raster with no time dimension, or ``dt <= 0``.

    Example:
        >>> raster = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
        >>> spikes_to_times(raster[:, None, :], dt=0.5)  # T = 3, B = 1, N = 3
        tensor([[0.5000, 1.0000,    inf]])
    """
    if not isinstance(spikes, Tensor) or spikes.dim() < 1:
        raise InputError(f"spikes_to_times: spikes must be a [T, ...] tensor, got {spikes!r:.80}")
    if not dt > 0:
        raise InputError(f"spikes_to_times: dt must be > 0, got {dt}")
    dtype = spikes.dtype if spikes.is_floating_point() else torch.float32
    if spikes.shape[0] == 0:
        return torch.full(spikes.shape[1:], math.inf, dtype=dtype, device=spikes.device)
    # max(dim).indices is the first maximum (and much faster than argmax over a strided dim)
    fired, first = (spikes != 0).to(torch.uint8).max(dim=0)
    times = offset + first.to(dtype) * dt
    return times.masked_fill(fired == 0, math.inf)


def times_to_spikes(times: Tensor, dt: float, steps: int, offset: float = 0.0) -> Tensor:
    """One-spike raster ``[steps, ...]`` of first-spike times (inverse of :func:`spikes_to_times`).

    A spike at time ``t`` lands on step ``k = round((t - offset) / dt)``; times at or beyond
    step ``steps`` (and ``+inf``) give no spike. Times on the grid round-trip exactly, others to
    the nearest step (within ``dt / 2``).

    Args:
        times: first-spike times, any shape, floating, ``+inf`` for no spike.
        dt: time step (``> 0``).
        steps: number of steps ``T``.
        offset: time of step 0.

    Returns:
        ``[steps, *times.shape]`` of 0 and 1 in ``times``' dtype.

    Raises:
        InputError: NaN, ``-inf`` or times before ``offset - dt / 2``, ``dt <= 0``, ``steps < 0``.

    Example:
        >>> raster = times_to_spikes(torch.tensor([[0.5, 1.0, math.inf]]), dt=0.5, steps=3)
        >>> raster[:, 0, :]
        tensor([[0., 0., 0.],
                [1., 0., 0.],
                [0., 1., 0.]])
        >>> spikes_to_times(raster, dt=0.5)
        tensor([[0.5000, 1.0000,    inf]])
    """
    if not isinstance(times, Tensor) or not times.is_floating_point():
        raise InputError(f"times_to_spikes: times must be a floating tensor, got {type(times)}")
    if not dt > 0 or int(steps) != steps or steps < 0:
        raise InputError(f"times_to_spikes: need dt > 0 and steps >= 0, got dt={dt}, {steps=}")
    if bool(torch.isnan(times).any()) or bool((times < offset - 0.5 * dt).any()):
        raise InputError(
            f"times_to_spikes: times must not be NaN nor lie before offset - dt / 2 "
            f"({offset - 0.5 * dt}); use +inf for 'no spike'"
        )
    finite = torch.isfinite(times)
    step = torch.round((torch.where(finite, times, offset) - offset) / dt)
    inside = finite & (step < steps)
    index = torch.where(inside, step, 0).long()
    raster = torch.zeros((steps, *times.shape), dtype=times.dtype, device=times.device)
    if steps:
        raster.scatter_(0, index[None], inside[None].to(times.dtype))
    return raster


# ---------------------------------------------------------------------------------- layers
def _psp(s: Tensor, p: SpikeTimeParams) -> tuple[Tensor, Tensor]:
    """Shape of a PSP ``s >= 0`` after its input, and its slope, up to one positive factor.

    ``tau_m = tau_s = tau``: ``s e^(-s/tau)``; ``tau_m = 2 tau_s``: ``e^(-s/tau_m) - e^(-s/tau_s)``
    (the factors ``1/C`` and ``tau_m tau_s / (C (tau_m - tau_s))`` cancel in ``dT``). Both
    vanish at ``s = 0``.
    """
    if p.tau_ratio == 1:
        decay = torch.exp(s / -p.tau_s)
        eps = s * decay
        return eps, decay - eps / p.tau_s
    slow, fast = torch.exp(s / -p.tau_m), torch.exp(s / -p.tau_s)
    return slow - fast, fast / p.tau_s - slow / p.tau_m


class _LargeUpdateGuard(torch.autograd.Function):
    """Identity on the spike times; its backward removes the weight update of grazing spikes.

    For every (sample ``b``, neuron ``j``) that fires, implicit differentiation of
    ``u(T) = theta`` gives ``dT/dw_i = -eps(T - t_i) / u'(T)`` with ``u'(T) = sum_k w_k
    eps'(T - t_k)`` over the causal inputs. Where ``|g_bj| max_i |dT/dw_i| > max_dw_norm`` (or
    ``u'(T) <= 0``), the upstream gradient ``g_bj`` is withheld from the spike-time kernel, and
    its time gradient ``g_bj dT/dt_i = g_bj w_i eps'(T - t_i) / u'(T)`` is added here instead:
    as in the reference, the error still propagates to earlier layers; only this sample's update
    of this neuron's weights is dropped. A counter (``count``) records how many were dropped.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        out: Tensor,
        times: Tensor,
        weights: Tensor,
        params: SpikeTimeParams,
        max_dw_norm: float,
        count: Tensor,
    ) -> Tensor:
        ctx.save_for_backward(out, times, weights)
        ctx.params, ctx.max_dw_norm, ctx.count = params, max_dw_norm, count  # type: ignore[attr-defined]
        return out.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        out, times, weights = ctx.saved_tensors
        # T_j - t_i, [B, N_in, N_out]; -inf where neuron j is silent or input i never spikes
        out_f = torch.where(torch.isfinite(out), out, -math.inf)
        times_f = torch.where(torch.isfinite(times), times, math.inf)
        lag = out_f[:, None, :] - times_f[:, :, None]
        causal = lag >= 0
        eps, slope = _psp(lag.clamp_min_(0.0), ctx.params)  # eps = 0 outside the causal set
        slope.mul_(causal)
        du = (slope * weights).sum(dim=1)  # u'(T) up to the positive factor
        largest = eps.amax(dim=1)  # max_i |dT/dw_i| * |u'|  (eps >= 0)
        active = torch.isfinite(out) & (grad != 0)
        jump = active & ((du <= 0) | (grad.abs() * largest > ctx.max_dw_norm * du.abs()))
        if not bool(jump.any()):
            return grad, None, None, None, None, None
        ctx.count += jump.sum()
        zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
        grad_out = torch.where(jump, zero, grad)
        grad_times = None
        if ctx.needs_input_grad[1]:
            coef = torch.where(jump & (du > 0), grad / torch.where(du > 0, du, 1.0), zero)
            grad_times = torch.einsum("bij,bj->bi", slope * weights, coef)
        return grad_out, grad_times, None, None, None, None


class FirstSpikeLayer(nn.Module):
    """A layer of single-spike LIF neurons: input spike times in, first output spike times out.

    ``forward(times)`` appends the bias spike (if any) to every sample's inputs and returns
    :func:`~plasticity_plugins.kernels.spike_time.first_spike_times` of the layer's neurons
    (``+inf`` where a neuron does not fire), differentiable in the weights and in the input
    times (analytic gradients). See the module docstring for the neuron and the loss.

    Args:
        in_features: number of inputs ``N_in`` (without the bias).
        out_features: number of neurons ``N_out``.
        bias_time: time of the bias spike (one extra input row of weights), or None.
        params: the neuron (:class:`~plasticity_plugins.kernels.spike_time.SpikeTimeParams`).
        weight_init: ``(mean, std)`` of the normal initial weights.
        max_dw_norm: drop the weight update of a (sample, neuron) whose largest ``|dL/dw_i|``
            exceeds this (the reference's guard against grazing spikes); None: off.
        device: device of the weights.
        dtype: dtype of the weights (float32 or float64); inputs must match it.
        generator: RNG of the initial weights.

    Attributes:
        weight: ``[N_in (+ 1), N_out]``; the bias row is the last one.
        clipped: number of (sample, neuron) updates dropped by ``max_dw_norm`` so far.

    Example:
        >>> layer = FirstSpikeLayer(2, 1, bias_time=0.5, weight_init=(1.0, 0.0))
        >>> with torch.no_grad():  # three inputs of weight 1 at 0.1, 0.2 and 0.5 (the bias)
        ...     print(layer(torch.tensor([[0.1, 0.2]])), layer(torch.tensor([math.inf, math.inf])))
        tensor([[0.9417]]) tensor([inf])
    """

    clipped: Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_time: float | None = None,
        params: SpikeTimeParams | None = None,
        weight_init: tuple[float, float] = (0.5, 0.8),
        max_dw_norm: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if in_features < 0 or out_features < 1:
            raise InputError(
                f"FirstSpikeLayer needs in_features >= 0 and out_features >= 1, got "
                f"{in_features}, {out_features}"
            )
        if bias_time is not None and not math.isfinite(bias_time):
            raise InputError(f"FirstSpikeLayer: bias_time must be finite or None, got {bias_time}")
        if max_dw_norm is not None and not max_dw_norm > 0:
            raise InputError(f"FirstSpikeLayer: max_dw_norm must be > 0 or None, got {max_dw_norm}")
        self.in_features, self.out_features = in_features, out_features
        self.params = SpikeTimeParams() if params is None else params
        self.max_dw_norm = max_dw_norm
        self.bias_time = bias_time
        rows = in_features + (bias_time is not None)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        mean, std = weight_init
        weight = torch.randn((rows, out_features), generator=generator, dtype=dtype) * std + mean
        self.weight = nn.Parameter(weight.to(device))
        self.register_buffer(
            "clipped", torch.zeros((), dtype=torch.long, device=device), persistent=False
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, bias_time={self.bias_time}, "
            f"max_dw_norm={self.max_dw_norm}, params={self.params}"
        )

    def forward(self, times: Tensor) -> Tensor:
        """First spike times ``[B, N_out]`` (or ``[N_out]``) of input times ``[B, N_in]``."""
        if not isinstance(times, Tensor) or times.dim() not in (1, 2):
            raise InputError(
                f"FirstSpikeLayer: times must be a [B, {self.in_features}] or "
                f"[{self.in_features}] tensor, got {getattr(times, 'shape', type(times))}"
            )
        if times.shape[-1] != self.in_features:
            raise InputError(
                f"FirstSpikeLayer({self.in_features} -> {self.out_features}): times have "
                f"{times.shape[-1]} inputs (shape {tuple(times.shape)}), expected "
                f"{self.in_features}"
            )
        batched = times if times.dim() == 2 else times[None]
        if self.bias_time is not None:
            bias = batched.new_full((batched.shape[0], 1), self.bias_time)
            batched = torch.cat([batched, bias], dim=1)
        out = first_spike_times(batched, self.weight, self.params)
        if self.max_dw_norm is not None and torch.is_grad_enabled() and self.weight.requires_grad:
            out = _LargeUpdateGuard.apply(
                out, batched, self.weight, self.params, self.max_dw_norm, self.clipped
            )
        return out if times.dim() == 2 else out[0]


class FirstSpikeNetwork(nn.Module):
    """A feed-forward stack of :class:`FirstSpikeLayer` (the Fast & Deep network).

    Args:
        layer_sizes: ``(N_inputs, N_hidden..., N_out)``.
        bias_times: per weight layer, its bias spike time or None (default: no biases).
        weight_init: per weight layer, ``(mean, std)`` of the initial weights.
        params: the neuron of every layer.
        max_dw_norm: every layer's guard against grazing spikes (None: off).
        device: device of the weights.
        dtype: dtype of the weights.
        generator: RNG of the initial weights.

    Example:
        >>> net = FirstSpikeNetwork((4, 8, 3), weight_init=((1.5, 0.5), (0.5, 0.5)))
        >>> all_times = net.forward_all(torch.full((2, 4), 0.5))
        >>> [tuple(t.shape) for t in all_times]  # hidden, then output times
        [(2, 8), (2, 3)]
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        bias_times: Sequence[float | None] | None = None,
        weight_init: Sequence[tuple[float, float]] | None = None,
        params: SpikeTimeParams | None = None,
        max_dw_norm: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        n_layers = len(layer_sizes) - 1
        if n_layers < 1:
            raise InputError(f"FirstSpikeNetwork needs at least 2 layer sizes, got {layer_sizes}")
        bias_times = [None] * n_layers if bias_times is None else list(bias_times)
        weight_init = [(0.5, 0.8)] * n_layers if weight_init is None else list(weight_init)
        if len(bias_times) != n_layers or len(weight_init) != n_layers:
            raise InputError(
                f"FirstSpikeNetwork: bias_times and weight_init need {n_layers} entries, got "
                f"{len(bias_times)} and {len(weight_init)}"
            )
        self.layers = nn.ModuleList(
            FirstSpikeLayer(
                layer_sizes[k],
                layer_sizes[k + 1],
                bias_time=bias_times[k],
                params=params,
                weight_init=weight_init[k],
                max_dw_norm=max_dw_norm,
                device=device,
                dtype=dtype,
                generator=generator,
            )
            for k in range(n_layers)
        )

    @property
    def spike_layers(self) -> list[FirstSpikeLayer]:
        """The layers, typed (``self.layers`` is an ``nn.ModuleList``)."""
        return [layer for layer in self.layers if isinstance(layer, FirstSpikeLayer)]

    def clipped(self) -> int:
        """Weight updates dropped by ``max_dw_norm`` so far, all layers together."""
        return sum(int(layer.clipped) for layer in self.spike_layers)

    def forward_all(self, times: Tensor) -> list[Tensor]:
        """The spike times of every layer, the output layer last."""
        result = []
        for layer in self.layers:
            times = layer(times)
            result.append(times)
        return result

    def forward(self, times: Tensor) -> Tensor:
        """Output spike times ``[B, N_out]`` of input times ``[B, N_in]``."""
        return self.forward_all(times)[-1]


# ------------------------------------------------------------------------------------ loss
def _check_outputs(times: Tensor, labels: Tensor, name: str) -> None:
    if not isinstance(times, Tensor) or times.dim() != 2 or not times.is_floating_point():
        raise InputError(f"{name}: times must be a floating [B, classes] tensor, got {times!r:.80}")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point():
        raise InputError(f"{name}: labels must be an integer [B] tensor, got {labels!r:.80}")
    if labels.shape[0] != times.shape[0]:
        raise InputError(f"{name}: {times.shape[0]} samples of times but {labels.shape[0]} labels")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= times.shape[1]):
        raise InputError(
            f"{name}: labels must lie in [0, {times.shape[1]}), got "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    if bool(torch.isnan(times).any()) or bool((times == -math.inf).any()):
        raise InputError(f"{name}: times contain NaN or -inf (+inf means no spike)")


def fast_and_deep_loss(
    times: Tensor,
    labels: Tensor,
    tau_s: float = 1.0,
    xi: float = 0.2,
    alpha: float = 0.005,
    beta: float = 1.0,
    missing_loss: float = 100.0,
    reduction: str = "mean",
) -> Tensor:
    """The Fast & Deep loss of output spike times.

    Per sample, with ``n*`` its label::

        L = -log( exp(-t_n* / (xi tau_s)) / sum_n exp(-t_n / (xi tau_s)) )
            + alpha exp(t_n* / (beta tau_s))

    The first term (cross-entropy of a softmax over negative times) makes the label neuron fire
    first; the second pushes it to fire early. Silent non-label neurons (``+inf``) drop out of
    the sum. Where the label neuron is silent the loss is ``missing_loss`` with no gradient
    (the reference relies on weight bumping to bring such neurons back).

    Args:
        times: output spike times ``[B, classes]``, ``+inf`` for no spike.
        labels: ``[B]`` integer labels.
        tau_s: synaptic time constant (the time unit of ``xi`` and ``beta``).
        xi: softmax temperature.
        alpha: weight of the regulariser.
        beta: time scale of the regulariser.
        missing_loss: loss of a sample whose label neuron is silent.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample ``[B]``).

    Raises:
        InputError: wrong shapes or dtypes, labels out of range, NaN or ``-inf`` times, an
            unknown reduction.

    Example:
        >>> t = torch.tensor([[0.5, 1.0, math.inf], [math.inf, 1.0, 1.2]])
        >>> fast_and_deep_loss(t, torch.tensor([0, 0]), reduction="none")
        tensor([8.7133e-02, 1.0000e+02])
    """
    _check_outputs(times, labels, "fast_and_deep_loss")
    if reduction not in ("mean", "sum", "none"):
        raise InputError(
            f"fast_and_deep_loss: reduction must be mean, sum or none, got {reduction}"
        )
    label_times = times.gather(1, labels[:, None]).squeeze(1)
    missing = torch.isinf(label_times)
    # rows whose label neuron is silent: computed on zeros (finite, no NaN), then replaced
    safe = torch.where(missing[:, None], torch.zeros_like(times), times)
    safe_label = safe.gather(1, labels[:, None]).squeeze(1)
    cross_entropy = -torch.log_softmax(-safe / (xi * tau_s), dim=1).gather(1, labels[:, None])
    per_sample = cross_entropy.squeeze(1) + alpha * torch.exp(safe_label / (beta * tau_s))
    per_sample = torch.where(missing, torch.full_like(per_sample, missing_loss), per_sample)
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def predict(times: Tensor) -> Tensor:
    """The class of each sample: its first-firing output neuron; ``-1`` where none fires.

    Example:
        >>> predict(torch.tensor([[0.7, 0.4, 0.9], [math.inf, math.inf, math.inf]]))
        tensor([ 1, -1])
    """
    first = times.argmin(dim=1)
    silent = torch.isinf(times.gather(1, first[:, None]).squeeze(1))
    return first.masked_fill(silent, -1)


# --------------------------------------------------------------------------- training aids
class WeightBumping:
    """The reference's remedy for silent neurons: raise their input weights.

    After each forward pass of training, the layers are checked in order; the first whose
    fraction of silent (sample, neuron) pairs exceeds its ``max_missing`` is bumped: ``value``
    is added to every input weight (bias row included) of each neuron that was silent for some
    sample of the batch (``targeted``; else to all of the layer's weights), and no gradient step
    is taken for that batch. With ``exponential``, the bump doubles each time the same layer is
    bumped again in a row; a batch that needs no bump, or a different layer, resets it.

    Args:
        value: the first bump (reference: 0.0005).
        max_missing: per layer (or one for all) tolerated fraction of silent pairs (reference:
            Yin-Yang ``(0.3, 0.0)``, 16x16 MNIST ``(0.5, 0.5)``).
        exponential: double repeated bumps of the same layer.
        targeted: bump only the silent neurons.

    Example:
        >>> net = FirstSpikeNetwork((1, 2), weight_init=[(0.0, 0.0)])
        >>> bump = WeightBumping(0.5, max_missing=(0.0,))
        >>> times = net.forward_all(torch.tensor([[0.0]]))  # weights 0: both silent
        >>> bump(net.layers, times), bump(net.layers, times), net.layers[0].weight.tolist()
        (0, 0, [[1.5, 1.5]])
    """

    def __init__(
        self,
        value: float = 0.0005,
        max_missing: Sequence[float] = (0.3, 0.0),
        exponential: bool = True,
        targeted: bool = True,
    ) -> None:
        if not value > 0:
            raise InputError(f"WeightBumping: value must be > 0, got {value}")
        self.value = value
        self.max_missing = tuple(max_missing)
        self.exponential, self.targeted = exponential, targeted
        self.current = value
        self.last: int | None = None
        self.count = 0

    def __call__(
        self, layers: Sequence[FirstSpikeLayer], layer_times: Sequence[Tensor]
    ) -> int | None:
        """Bump the first layer with too many silent neurons; its index, or None (no bump).

        Args:
            layers: the network's layers.
            layer_times: their output times of this batch (``FirstSpikeNetwork.forward_all``).
        """
        if len(layers) != len(layer_times):
            raise InputError(
                f"WeightBumping: {len(layers)} layers but {len(layer_times)} time tensors"
            )
        if len(self.max_missing) not in (1, len(layers)):
            raise InputError(
                f"WeightBumping: max_missing has {len(self.max_missing)} entries for "
                f"{len(layers)} layers"
            )
        bumped = None
        for k, times in enumerate(layer_times):
            silent = ~torch.isfinite(times.detach())
            limit = self.max_missing[k if len(self.max_missing) > 1 else 0]
            if silent.numel() and float(silent.float().mean()) > limit:
                bumped = k
                break
        if bumped is None:
            self.last = None
            return None
        if self.exponential and bumped == self.last:
            self.current *= 2.0
        else:
            self.current = self.value
        self.last = bumped
        self.count += 1
        weight = layers[bumped].weight
        with torch.no_grad():
            if self.targeted:
                silent_neurons = silent.reshape(-1, silent.shape[-1]).any(dim=0)
                weight.add_(silent_neurons.to(weight.dtype) * self.current)
            else:
                weight.add_(self.current)
        return bumped


# -------------------------------------------------------------------------------- training
@dataclass
class EpochStats:
    """What one training epoch did.

    Attributes:
        loss: mean training loss of the batches that took a gradient step (NaN if none).
        accuracy: training accuracy in percent (all batches, before their update).
        steps: batches with a gradient step.
        bumps: batches that bumped weights instead.
        clipped: (sample, neuron) weight updates dropped by ``max_dw_norm``.
        seconds: wall time of the epoch.
    """

    loss: float
    accuracy: float
    steps: int
    bumps: int
    clipped: int
    seconds: float


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_epoch(
    net: FirstSpikeNetwork,
    optimizer: torch.optim.Optimizer,
    times: Tensor,
    labels: Tensor,
    config: FastAndDeep,
    bumping: WeightBumping | None = None,
    generator: torch.Generator | None = None,
    progress: Any = None,
) -> EpochStats:
    """One epoch of Fast & Deep training over encoded inputs (the reference's loop).

    Per batch (shuffled with ``generator``): optional input noise (``config.input_noise``),
    forward pass through every layer, then either a weight bump (``bumping`` found too many
    silent neurons) or the loss, ``backward`` and an optimizer step. The learning-rate
    scheduler is the caller's (one step per epoch).

    Args:
        net: the network.
        optimizer: e.g. ``config.optimizer(net)``.
        times: encoded training inputs ``[N, N_in]`` (on the network's device and dtype).
        labels: ``[N]`` labels (same device).
        config: the hyper-parameters (batch size, loss constants, noise).
        bumping: ``config.bumping()`` (kept across epochs), or None.
        generator: RNG of the shuffling and the noise (CPU).
        progress: optional callable wrapping the batch iterator (e.g. ``functools.partial(
            tqdm, total=n)``).
    """
    start = time.perf_counter()
    losses: list[float] = []
    correct = bumps = 0
    clipped_before = net.clipped()
    batches: Any = _batches(len(times), config.batch_size, generator)
    if progress is not None:
        batches = progress(batches)
    for index in batches:
        index = index.to(times.device)
        x, y = times[index], labels[index]
        if config.input_noise:
            x = jitter_times(x, config.input_noise, generator)
        optimizer.zero_grad(set_to_none=True)
        all_times = net.forward_all(x)
        out = all_times[-1]
        correct += int((predict(out.detach()) == y).sum())
        if bumping is not None and bumping(net.spike_layers, all_times) is not None:
            bumps += 1
            continue
        loss = config.loss(out, y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    clipped = net.clipped() - clipped_before
    return EpochStats(
        loss=sum(losses) / len(losses) if losses else math.nan,
        accuracy=100.0 * correct / max(1, len(times)),
        steps=len(losses),
        bumps=bumps,
        clipped=clipped,
        seconds=time.perf_counter() - start,
    )


@torch.no_grad()
def evaluate(
    net: FirstSpikeNetwork,
    times: Tensor,
    labels: Tensor,
    config: FastAndDeep | None = None,
    batch_size: int = 250,
) -> tuple[float, float, Tensor]:
    """Accuracy (percent), mean loss and output times ``[N, classes]`` on encoded inputs.

    A sample counts as correct when its label neuron fires first (:func:`predict`). The default
    ``batch_size`` keeps a 128-neuron layer's Lambert W calls below the size at which
    :mod:`~plasticity_plugins.kernels.lambertw` compiles its CPU loop (seconds, once per process).
    """
    config = FastAndDeep() if config is None else config
    outputs = [net(times[s : s + batch_size]) for s in range(0, len(times), batch_size)]
    out = torch.cat(outputs) if outputs else times.new_empty((0, net.spike_layers[-1].out_features))
    accuracy = 100.0 * float((predict(out) == labels).float().mean()) if len(out) else math.nan
    loss = float(config.loss(out, labels)) if len(out) else math.nan
    return accuracy, loss, out
