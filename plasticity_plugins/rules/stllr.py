"""S-TLLR: STDP-inspired temporal local learning rule (Apolinario & Roy, arXiv 2306.15220)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from ..errors import InputError, StateError
from ..kernels.synapse import outer_accumulate_
from ..kernels.traces import trace_sequence
from .base import GradientRule, PairView, RuleState, conv_geometry, pair_seed, sequence_state

PsiKind = Literal["framework", "linear", "conv", "sigmoid"]

#: Published factor sets, in the reference code's order [lambda_post, lambda_pre, alpha_post,
#: alpha_pre]: the layer default, the command-line default and the SHD run.
PUBLISHED: dict[str, tuple[float, float, float, float]] = {
    "layer": (0.5, 0.8, -0.2, 1.0),
    "cli": (0.2, 0.75, -1.0, 1.0),
    "shd": (0.5, 1.0, 1.0, 1.0),
}


def stllr_surrogate(kind: PsiKind, centred: Tensor) -> Tensor:
    """The S-TLLR reference code's surrogate derivatives of ``centred = u - v_th``.

    ``"linear"``: ``1 / (100 |x| + 1)^2``; ``"conv"``: ``0.3 max(0, 1 - |x|)``;
    ``"sigmoid"``: ``4 s(4x) (1 - s(4x))``.

    Example:
        >>> stllr_surrogate("conv", torch.tensor([0.0, 0.5, 2.0]))
        tensor([0.3000, 0.1500, 0.0000])
    """
    if kind == "linear":
        return torch.reciprocal((100.0 * centred.abs() + 1.0) ** 2)
    if kind == "conv":
        return 0.3 * (1.0 - centred.abs()).clamp(min=0.0)
    if kind == "sigmoid":
        sig = torch.sigmoid(4.0 * centred)
        return 4.0 * sig * (1.0 - sig)
    raise ValueError(f"unknown S-TLLR surrogate {kind!r}; expected 'linear', 'conv' or 'sigmoid'")


@dataclass(frozen=True)
class STLLR(GradientRule):
    """S-TLLR: eligibility traces times a per-step learning signal, memory independent of T.

    Per pair and time step (``x``: the synapse input, ``psi``: the surrogate derivative at the
    neuron's pre-reset membrane)::

        tr_x[t]   = lambda_pre  * tr_x[t-1]   + x[t]
        tr_psi[t] = lambda_post * tr_psi[t-1] + psi[t]
        e[t]      = alpha_pre * psi[t] (x) tr_x[t]  +  alpha_post * tr_psi[t-1] (x) x[t]
        grad W   += g * delta[t] * e[t]    grad b += g * delta[t] * psi[t]

    with ``g`` the neuron's input gain (1 except Norse, ``dt * tau_mem_inv``), so that the
    update is the loss gradient's estimate in the neuron's own weight units.

    ``delta[t] = dLoss(t)/ds[t]`` is the error of step ``t`` only: ``signal="bp"`` passes it
    down between layers within the step, ``delta^(l-1) = (psi^l * delta^l) W^l``, through the
    rule's ``psi``; ``signal="dfa"`` sends the top layer's error through a fixed random matrix
    per layer (Kaiming uniform). The non-causal term uses ``tr_psi[t-1]`` as the reference code
    does (the paper's sum is that times ``lambda_post``: ``paper_post_trace=True``).

    Semantics:
        * Reduction: summed over time steps, the batch and convolution positions (the loss
          handed to ``handle.backward`` carries any batch mean, as with autograd).
        * Timing: traces include the current step; the learning signal of step t pairs with
          the eligibility of step t. ``delay_ls = k``: only the last k of the
          ``handle.reset(steps=T)`` steps carry a signal.
        * Sign: what lands in ``.grad`` estimates ``+dLoss/dW`` (descend it as usual).
        * The framework neuron computes the forward pass; its state is detached between
          steps, so memory does not grow with T.

    Args:
        lambda_post, lambda_pre, alpha_post, alpha_pre: the trace factors (defaults: the
            reference layer's; see :meth:`published`).
        signal: ``"bp"`` or ``"dfa"``.
        delay_ls: if set, only the last ``delay_ls`` steps of the sequence learn.
        psi: ``"framework"`` (the neuron's own surrogate) or the reference code's
            ``"linear"``, ``"conv"``, ``"sigmoid"`` (of ``u - threshold``).
        paper_post_trace: use the paper's non-causal term (times ``lambda_post``).
        feedback_seed: seed of the DFA feedback matrices.

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.rules import STLLR
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))
        >>> handle = plasticity_plugins.attach(net, STLLR.published("cli"))
        >>> for t in range(3):
        ...     handle.backward(net(torch.ones(2, 4)).sum())
        >>> net[0].weight.grad.shape
        torch.Size([3, 4])
        >>> handle.detach()
    """

    lambda_post: float = 0.5
    lambda_pre: float = 0.8
    alpha_post: float = -0.2
    alpha_pre: float = 1.0
    persistent_state: tuple[str, ...] = ("feedback",)
    signal: Literal["bp", "dfa"] = "bp"
    delay_ls: int | None = None
    psi: PsiKind = "framework"
    paper_post_trace: bool = False
    feedback_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lambda_post", "lambda_pre"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"STLLR: {name} is a trace decay in [0, 1], got {value}")
        if self.signal not in ("bp", "dfa"):
            raise ValueError(f"STLLR: signal must be 'bp' or 'dfa', got {self.signal!r}")
        if self.psi not in ("framework", "linear", "conv", "sigmoid"):
            raise ValueError(
                f"STLLR: psi must be 'framework', 'linear', 'conv' or 'sigmoid', got {self.psi!r}"
            )
        if self.delay_ls is not None and self.delay_ls < 1:
            raise ValueError(f"STLLR: delay_ls must be >= 1 steps, got {self.delay_ls}")

    @classmethod
    def published(cls, name: str, **overrides: object) -> STLLR:
        """A published factor set: ``"layer"`` (default), ``"cli"`` or ``"shd"``."""
        if name not in PUBLISHED:
            raise ValueError(f"unknown S-TLLR preset {name!r}; choose from {sorted(PUBLISHED)}")
        lambda_post, lambda_pre, alpha_post, alpha_pre = PUBLISHED[name]
        rule = cls(
            lambda_post=lambda_post,
            lambda_pre=lambda_pre,
            alpha_post=alpha_post,
            alpha_pre=alpha_pre,
        )
        return replace(rule, **overrides)  # type: ignore[arg-type]

    def surrogate(self, view: PairView) -> Tensor:
        """``psi`` of this call, neuron layout ``[T, B, *features]``."""
        if self.psi == "framework":
            return view.neuron.psi
        return stllr_surrogate(self.psi, view.neuron.u - view.spec.threshold)

    def step(self, view: PairView, state: RuleState) -> None:
        """Advance the traces over this call and keep its eligibility factors for learn()."""
        x = view.x
        psi = self.surrogate(view)
        traces = sequence_state(
            view, state, {"pre_trace": (x, 0.0), "post_trace": (psi, 0.0)}, "S-TLLR"
        )
        pre_trace, post_trace = traces["pre_trace"], traces["post_trace"]
        if x.shape[0] == 1:  # one step per call: the recursion itself, no sequence buffers
            pre_now = torch.add(x[0], pre_trace, alpha=self.lambda_pre)
            post_now = torch.add(psi[0], post_trace, alpha=self.lambda_post)
            pre_traces, post_before = pre_now.unsqueeze(0), post_trace.unsqueeze(0)
        else:
            pre_traces = trace_sequence(x, pre_trace, self.lambda_pre)
            post_traces = trace_sequence(psi, post_trace, self.lambda_post)
            pre_now, post_now = pre_traces[-1], post_traces[-1]
            post_before = torch.cat([post_trace.unsqueeze(0), post_traces[:-1]])
        state["pre_trace"], state["post_trace"] = pre_now, post_now
        # Kept until learn() consumes them (the paper's lambda_post factor is applied there).
        state["pending_pre_trace"] = pre_traces
        state["pending_post_before"] = post_before
        state["pending_psi"] = psi

    def _signal_mask(self, view: PairView, delta: Tensor) -> Tensor:
        if self.delay_ls is None:
            return delta
        if view.total_steps is None:
            raise StateError(
                f"S-TLLR on {view.name}: delay_ls={self.delay_ls} needs the sequence length; "
                "call handle.reset(steps=T) at the start of each sequence"
            )
        if self.delay_ls > view.total_steps:
            raise InputError(
                f"S-TLLR on {view.name}: delay_ls={self.delay_ls} is larger than the sequence "
                f"length T={view.total_steps}; use 1 <= delay_ls <= T"
            )
        first_learning = view.total_steps - self.delay_ls
        steps = torch.arange(view.first_step, view.first_step + view.steps, device=delta.device)
        keep = (steps >= first_learning).to(delta.dtype)
        return delta * keep.reshape(-1, *([1] * (delta.dim() - 1)))

    def learn(self, view: PairView, state: RuleState, delta: Tensor) -> Tensor | None:
        """Accumulate ``delta (x) e`` into the weight's and ``delta * psi`` into the bias's grad.

        Straight into the accumulator: one step of a Linear synapse's two terms of ``e`` as one
        GEMM over both terms' rows stacked (one pass over the accumulator), otherwise one GEMM
        or weight-gradient convolution per term; a term whose factor is 0 is skipped. The call's
        eligibility factors are released afterwards.
        """
        delta = self._signal_mask(view, delta)
        psi = state.pop("pending_psi")
        pre_traces = state.pop("pending_pre_trace")
        post_before = state.pop("pending_post_before")
        # The neuron scales its synaptic input by input_gain (Norse: dt * tau_mem_inv), so
        # du/dW = input_gain * x: the gain belongs to the post-synaptic factor.
        gain = view.spec.input_gain
        signal = delta * psi
        causal = view.to_synapse_output(signal)
        steps, batch = causal.shape[:2]
        rows = steps * batch
        post_shape = (rows, *causal.shape[2:])
        x = view.x
        pre_shape = (rows, *x.shape[2:])
        weight = view.synapse.weight
        assert isinstance(weight, Tensor)
        factor = view.sink.gradient_factor * gain
        geometry = conv_geometry(view.synapse)
        accumulator = view.sink.accumulator(weight)
        alpha_post = self.alpha_post * (self.lambda_post if self.paper_post_trace else 1.0)
        noncausal = view.to_synapse_output(delta * post_before) if self.alpha_post != 0.0 else None
        if geometry is None and noncausal is not None and self.alpha_pre != 0.0 and steps == 1:
            # One step of a Linear synapse: both terms stacked along the sample axis, one GEMM,
            # one pass over the accumulator instead of two (it is larger than the cache; the
            # copies are of one step's small factors; the terms' ratio goes on the fresh
            # non-causal factor). A multi-step call's products are long enough for that pass
            # not to matter, and its stacked copies would cost O(T) memory.
            post = torch.cat(
                [
                    causal.reshape(post_shape),
                    noncausal.reshape(post_shape).mul_(alpha_post / self.alpha_pre),
                ]
            )
            pre = torch.cat([pre_traces.reshape(pre_shape), x.reshape(pre_shape)])
            outer_accumulate_(accumulator, post, pre, factor * self.alpha_pre, geometry)
        else:
            terms = [(causal, pre_traces, self.alpha_pre), (noncausal, x, alpha_post)]
            for post_factor, pre_factor, amplitude in terms:
                if post_factor is not None and amplitude != 0.0:
                    outer_accumulate_(
                        accumulator,
                        post_factor.reshape(post_shape),
                        pre_factor.reshape(pre_shape),
                        factor * amplitude,
                        geometry,
                    )
        bias = getattr(view.synapse, "bias", None)
        if isinstance(bias, Tensor):
            reduce_dims = [0, 1, *range(3, causal.dim())]
            view.sink.accumulator(bias).add_(causal.sum(dim=reduce_dims), alpha=factor)
        if self.signal != "bp":
            return None
        return signal if gain == 1.0 else signal * gain

    def feedback_delta(self, view: PairView, state: RuleState, error: Tensor) -> Tensor:
        """DFA: ``delta = error B`` with ``B`` fixed, Kaiming uniform, ``[n_error, n_features]``."""
        features = view.neuron.s.shape[2:]
        n_features = math.prod(features)
        feedback = state.get("feedback")
        if feedback is None:
            generator = torch.Generator().manual_seed(self.feedback_seed + pair_seed(view.name))
            bound = math.sqrt(6.0 / error.shape[-1])
            feedback = (
                torch.rand(error.shape[-1], n_features, generator=generator) * 2 - 1
            ) * bound
            feedback = feedback.to(error.device, error.dtype)
            state["feedback"] = feedback
        return (error @ feedback).reshape(*error.shape[:2], *features)
