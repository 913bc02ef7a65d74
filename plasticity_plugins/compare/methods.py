"""The training methods the comparison runs: BPTT and each local rule that fits the network.

Each method trains the same network (:mod:`.frameworks`) on one batch of spike sequences
``x [T, B, N]`` with labels ``y [B]``:

* ``bptt``: the cross-entropy of the output spikes at every step, summed over the steps, one
  ``loss.backward()`` through time (the "before" of the README);
* ``stllr`` / ``stllr-dfa``: :class:`~plasticity_plugins.rules.STLLR` (the reference layer
  preset, BP or DFA learning signal) attached to every layer; the same loss handed to
  ``handle.backward`` per call (per step; SpikingJelly's multi-step call: per sequence);
* ``decolle``: :class:`~plasticity_plugins.rules.DECOLLE` attached to every layer,
  ``handle.backward(target=y)`` per call;
* ``stdp``: unsupervised pair STDP (:class:`~plasticity_plugins.rules.STDP`, soft bounds) on a
  network without the output layer, applied with ``SGD(lr=1)`` once per batch (the soft-bound
  factors ``w_max - w``, ``w - w_min`` carry the framework's weight units, so the update is in
  them too). Plain pair STDP has no competition: its features drift from the random ones it
  starts from, and the learning curve's first point (the probe on the untrained network) shows
  whether that helped. The Diehl & Cook network, where competition makes STDP learn digit
  prototypes, has its own example.

Accuracy: the argmax of the output spike counts over the test sequence (BPTT, S-TLLR); for
DECOLLE the majority vote of the hidden layer's fixed random readout (its classifier in the
paper); for STDP a linear probe (:mod:`.probe`) on the hidden layer's spike counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..rules import DECOLLE, STDP, STLLR, LocalRule

MethodKind = Literal["bptt", "online", "unsupervised"]


@dataclass(frozen=True)
class Method:
    """One compared training method.

    Attributes:
        name: the command-line name.
        label: the name in tables and figures.
        kind: ``"bptt"`` (autograd through time), ``"online"`` (a gradient rule through
            ``handle.backward``), ``"unsupervised"`` (a Hebbian rule, scored by a probe).
        description: one line for ``plasticity-plugins list``.
        accuracy: how the method's accuracy is defined (stated in every output).
        make_rule: ``make_rule(num_classes, weight_scale)``: the rule attached (None for
            BPTT), with any weight bounds in the framework's weight units (``weight_scale``:
            :attr:`.frameworks.FrameworkKit.weight_scale`).
        init_scale: unsupervised methods: the hidden weights start uniform in
            ``[-init_scale, init_scale]`` (in snnTorch units) with zero bias, so that the
            hidden layer fires at the start (torch's default initialisation leaves the
            matched neurons nearly silent, and nothing is trained to wake them up).
    """

    name: str
    label: str
    kind: MethodKind
    description: str
    accuracy: str
    make_rule: Callable[[int, float], LocalRule] | None = None
    init_scale: float | None = None


OUTPUT_VOTE = "argmax of the output layer's spike counts over the test sequence"

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            "bptt",
            "BPTT",
            "bptt",
            "backpropagation through time (autograd), the baseline",
            OUTPUT_VOTE,
        ),
        Method(
            "stllr",
            "S-TLLR",
            "online",
            "S-TLLR eligibility traces x per-step BP error (Apolinario & Roy), every layer",
            OUTPUT_VOTE,
            lambda num_classes, scale: STLLR.published("layer"),
        ),
        Method(
            "stllr-dfa",
            "S-TLLR (DFA)",
            "online",
            "S-TLLR with direct feedback alignment: fixed random feedback of the output error",
            OUTPUT_VOTE,
            lambda num_classes, scale: STLLR.published("layer", signal="dfa"),
        ),
        Method(
            "decolle",
            "DECOLLE",
            "online",
            "DECOLLE: per-layer local losses through fixed random readouts (Kaiser et al.)",
            "majority vote over time of the hidden layer's fixed random readout",
            lambda num_classes, scale: DECOLLE(
                num_classes=num_classes, readout_scale=0.5, dropout=0.5
            ),
        ),
        Method(
            "stdp",
            "STDP",
            "unsupervised",
            "unsupervised pair STDP with soft bounds on the hidden layer (no output layer)",
            "linear probe (ridge regression) on the hidden layer's spike counts",
            lambda num_classes, scale: STDP(
                a_plus=1e-4,
                a_minus=1.05e-4,
                tau_pre=5.0,
                tau_post=5.0,
                weight_dependence="soft",
                w_min=-0.4 * scale,
                w_max=0.4 * scale,
            ),
            init_scale=0.2,
        ),
    )
}

#: The rules of the package that the comparison does not run, and where they are shown.
ELSEWHERE: dict[str, str] = {
    "TripletSTDP": "triplet STDP; used by DiehlCook(variant='code')",
    "DiehlCook": "its own network (theta, lateral inhibition): examples/diehl_cook_mnist.py",
    "MozafariSTDP": "convolutional, k-WTA gated: examples/mozafari_rstdp_mnist.py",
    "RSTDP": "reward-modulated, k-WTA gated: examples/mozafari_rstdp_mnist.py",
    "MSTDP": "reward-modulated STDP (Florian): rule.reward(r) per sample",
    "MSTDPET": "reward-modulated STDP with eligibility traces (Florian)",
    "FastAndDeep": "first-spike times (Lambert W): examples/fast_and_deep_yinyang.py",
}


def resolve(names: Sequence[str], known: Mapping[str, object], what: str) -> list[str]:
    """``names`` checked against ``known`` (``"all"`` means every one), in the given order.

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    if list(names) == ["all"]:
        return list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"unknown {what} {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(known)} (or 'all')"
        )
    return list(dict.fromkeys(names))
