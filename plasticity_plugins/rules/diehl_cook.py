"""Unsupervised STDP with homeostasis of Diehl & Cook (Front. Comput. Neurosci. 9:99, 2015)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import InputError, StateError
from ..kernels.competition import adaptive_threshold, normalize_weights_
from ..kernels.traces import decay_factor
from .base import LocalRule, PairView, RuleState
from .stdp import STDP, check_taus
from .triplet import TripletSTDP


@dataclass(frozen=True)
class DiehlCook(LocalRule):
    """Diehl & Cook 2015: STDP, adaptive thresholds and weight normalisation on [0, w_max].

    Three parts, per (synapse, excitatory neuron) pair:

    * STDP. ``variant="code"`` (the authors' code, SPECS §4): traces pre (``tau_pre``), post1
      (``tau_post1``), post2 (``tau_post2``) set to 1 on a spike; a pre spike does
      ``w -= nu_pre * post1``, a post spike ``w += nu_post * pre * post2`` with post2 taken
      before this spike (:meth:`TripletSTDP.diehl_cook`). ``variant="pair"`` is BindsNET's
      pair rule: ``w -= nu_pre * post`` on a pre spike, ``w += nu_post * pre`` on a post spike
      (:class:`STDP`, nearest traces). Same-step pairs are potentiation only.
    * Adaptive threshold: ``theta[t] = exp(-1 / tau_theta) theta[t-1] + theta_plus * n[t]``,
      ``n[t]`` the neuron's spikes at step ``t`` summed over the batch; written to the neuron
      as a threshold offset (``adapter.set_threshold_offset``) after every forward call, so it
      takes effect from the next call. ``theta`` survives ``handle.reset()`` (it is learned
      state) and is frozen while the handle is paused (evaluation).
    * Projection after each step of the optimizer handed to ``attach``: clip to ``[0, w_max]``,
      then rescale each neuron's input weights to sum to ``norm_target`` (78 in the paper; call
      the optimizer once per example so this happens "before every example"; normalise the
      initial weights with :func:`~plasticity_plugins.kernels.competition.normalize_weights_`).
      As in the original code, the rescaling may lift single weights above ``w_max``; the
      clip applies to the STDP updates.

    Lateral inhibition (the inhibitory population) belongs to the model:
    :func:`~plasticity_plugins.kernels.competition.lateral_inhibition` computes it. Labelling
    and prediction from spike counts: :meth:`assign_labels` and :meth:`predict`.

    Semantics:
        * Time constants in time steps: the defaults are the paper's ms values for 1 ms steps
          (double them for the original 0.5 ms).
        * Reduction: STDP summed over steps, MEAN over the batch; ``-dw`` lands in ``.grad``
          (``SGD(lr=1)`` applies ``dw``).
        * ``theta`` needs the neuron adapter (``PairView.adapter``); with ``theta_plus = 0``
          the rule runs without it.

    Args:
        nu_pre: depression rate (1e-4).
        nu_post: potentiation rate (1e-2).
        tau_pre, tau_post1, tau_post2: trace time constants (20, 20, 40).
        variant: ``"code"`` or ``"pair"``.
        theta_plus: threshold increase per spike (0.05).
        tau_theta: threshold decay time constant (1e7).
        w_max: upper weight bound (1).
        norm_target: each neuron's input weight sum after each optimizer step (78), or None.

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.rules import DiehlCook
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 3, bias=False),
        ...                           snn.Leaky(beta=0.9, init_hidden=True))
        >>> _ = torch.nn.init.uniform_(net[0].weight, 0.0, 0.3)
        >>> optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
        >>> rule = DiehlCook(norm_target=2.0)
        >>> handle = plasticity_plugins.attach(net, rule, optimizer=optimizer)
        >>> with torch.no_grad():
        ...     for t in range(10):
        ...         _ = net((torch.rand(1, 8) < 0.5).float() * 2)
        >>> optimizer.step()
        >>> [round(float(s), 5) for s in net[0].weight.detach().sum(1)]
        [2.0, 2.0, 2.0]
        >>> DiehlCook.predict(torch.tensor([[5.0, 0.0, 1.0]]), torch.tensor([1, 0, 1]), 2)
        tensor([1])
        >>> handle.detach()
    """

    nu_pre: float = 1e-4
    nu_post: float = 1e-2
    tau_pre: float = 20.0
    tau_post1: float = 20.0
    tau_post2: float = 40.0
    variant: Literal["code", "pair"] = "code"
    theta_plus: float = 0.05
    tau_theta: float = 1e7
    w_max: float = 1.0
    norm_target: float | None = 78.0
    _stdp: LocalRule = field(init=False, repr=False, compare=False)

    persistent_state = ("theta",)  # learned: survives handle.reset()

    def __post_init__(self) -> None:
        check_taus(self, "tau_pre", "tau_post1", "tau_post2", "tau_theta")
        if self.variant not in ("code", "pair"):
            raise ValueError(f"DiehlCook: variant must be 'code' or 'pair', got {self.variant!r}")
        if not self.w_max > 0:
            raise ValueError(f"DiehlCook: w_max must be > 0, got {self.w_max}")
        if self.norm_target is not None and not self.norm_target > 0:
            raise ValueError(f"DiehlCook: norm_target must be > 0 or None, got {self.norm_target}")
        stdp: LocalRule
        if self.variant == "code":
            stdp = TripletSTDP.diehl_cook(
                self.nu_pre, self.nu_post, self.tau_pre, self.tau_post1, self.tau_post2, self.w_max
            )
        else:
            stdp = STDP(
                a_plus=self.nu_post,
                a_minus=self.nu_pre,
                tau_pre=self.tau_pre,
                tau_post=self.tau_post1,
                trace="nearest",
                w_min=0.0,
                w_max=self.w_max,
            )
        object.__setattr__(self, "_stdp", stdp)

    def step(self, view: PairView, state: RuleState) -> None:
        """STDP of this call; then advance ``theta`` and write it to the neuron."""
        self._stdp.step(view, state)
        if self.theta_plus == 0.0:
            return
        if view.adapter is None:
            raise StateError(
                f"DiehlCook on {view.name}: the adaptive threshold needs the neuron's adapter "
                "(PairView.adapter) to set its threshold offset; the caller did not pass it. Use "
                "theta_plus=0 to run without adaptive thresholds"
            )
        weight = view.synapse.weight
        assert isinstance(weight, Tensor)
        spikes = view.neuron.s
        theta = state.get("theta")
        if theta is None or theta.shape != spikes.shape[2:]:
            theta = weight.new_zeros(spikes.shape[2:])
        theta = adaptive_threshold(theta, spikes, self.theta_plus, decay_factor(self.tau_theta))
        state["theta"] = theta
        view.adapter.set_threshold_offset(theta)

    def after_optimizer_step(self, synapse: nn.Module, state: RuleState) -> None:
        """Clip to ``[0, w_max]``, then rescale each neuron's input weights to ``norm_target``."""
        weight = synapse.weight
        assert isinstance(weight, Tensor)
        with torch.no_grad():
            weight.clamp_(0.0, self.w_max)
            if self.norm_target is not None:
                normalize_weights_(weight, self.norm_target)

    @staticmethod
    def assign_labels(counts: Tensor, labels: Tensor, n_classes: int) -> Tensor:
        """Each neuron's class: the class with its highest mean spike count per example.

        Args:
            counts: ``[N, F]`` spike counts of ``F`` neurons over ``N`` labelled examples.
            labels: ``[N]`` integer labels in ``[0, n_classes)``.
            n_classes: number of classes.

        Returns:
            ``[F]`` long: the class, or -1 for a neuron that never spiked (as the original code,
            which only assigns a neuron whose rate exceeds 0).

        Example:
            >>> counts = torch.tensor([[3.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 4.0, 0.0]])
            >>> DiehlCook.assign_labels(counts, torch.tensor([0, 1, 1]), 2)
            tensor([ 0,  1, -1])
        """
        if counts.dim() != 2 or labels.shape != counts.shape[:1]:
            raise InputError(
                f"DiehlCook.assign_labels: counts must be [N, F] and labels [N], got "
                f"{tuple(counts.shape)} and {tuple(labels.shape)}"
            )
        labels = labels.long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
            raise InputError(f"DiehlCook.assign_labels: labels must lie in [0, {n_classes})")
        counts = counts.to(torch.float64)
        sums = torch.zeros(n_classes, counts.shape[1], dtype=counts.dtype, device=counts.device)
        sums.index_add_(0, labels.to(counts.device), counts)
        per_class = torch.bincount(labels, minlength=n_classes).to(counts)
        means = sums / per_class.clamp(min=1).unsqueeze(1)
        best = means.max(0)
        return torch.where(best.values > 0, best.indices, torch.full_like(best.indices, -1))

    @staticmethod
    def predict(counts: Tensor, assignments: Tensor, n_classes: int) -> Tensor:
        """The class whose assigned neurons fire most on average, per example.

        Args:
            counts: ``[N, F]`` spike counts.
            assignments: ``[F]`` classes from :meth:`assign_labels` (-1: ignored).
            n_classes: number of classes.

        Returns:
            ``[N]`` long predictions (classes without neurons score 0; ties: lowest class).
        """
        if counts.dim() != 2 or assignments.shape != counts.shape[1:]:
            raise InputError(
                f"DiehlCook.predict: counts must be [N, F] and assignments [F], got "
                f"{tuple(counts.shape)} and {tuple(assignments.shape)}"
            )
        assignments = assignments.long().to(counts.device)
        valid = assignments >= 0
        one_hot = torch.zeros(counts.shape[1], n_classes, dtype=torch.float64, device=counts.device)
        one_hot[valid.nonzero().squeeze(1), assignments[valid]] = 1.0
        members = one_hot.sum(0).clamp(min=1)
        return ((counts.to(torch.float64) @ one_hot) / members).argmax(1)
