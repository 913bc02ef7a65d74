"""attach / detach / is_attached: wire local rules to an unchanged framework model.

``attach(model, rule)`` finds every (synapse, neuron) pair of a snnTorch, SpikingJelly or Norse
model, wraps each neuron in its framework's adapter and registers forward hooks. From then on,
every forward call of a neuron hands the rule a :class:`~plasticity_plugins.rules.PairView`
(pre-synaptic input, spikes, membrane, surrogate derivative) and the rule writes its update into
``param.grad``. The model's classes, parameters and output values are untouched;
``handle.detach()`` removes every hook and gives back the model exactly as it was.

Gradient rules (S-TLLR, DECOLLE) own their synapses' gradients, so with gradients enabled a
plastic synapse runs without recording an autograd graph, and its neuron's spikes are returned
as a fresh leaf tensor (same values) from which ``handle.backward`` takes ``dLoss/ds`` within the
step; a ``loss.backward()`` reaching such a leaf raises a clear error.

Pair discovery follows the order in which modules are CALLED: with ``example_input`` one forward
pass is traced (in eval mode, without gradients, with the RNG and the neuron states restored
afterwards); without it, the modules' registration order is used, which is the call order of an
``nn.Sequential`` and of class-style models that declare their layers in the order forward()
uses them. A synapse (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` or subclasses) pairs with the
next neuron called after it, through any number of Flatten / Unflatten / Dropout / pooling /
BatchNorm / Identity modules; any other module in between breaks the pair. A synapse called
inside a neuron (snnTorch RLeaky's ``recurrent``) pairs with that neuron.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .adapters import adapter_for, is_framework_neuron, supported_neurons
from .adapters.base import NeuronAdapter, NeuronObservation, NeuronSpec, eager_hook
from .errors import (
    AttachError,
    InputError,
    SequenceResetWarning,
    StateError,
    UnsupportedModuleError,
)
from .kernels.synapse import input_vjp
from .rules.base import (
    SYNAPSE_TYPES,
    GradientRule,
    LocalRule,
    PairView,
    RuleState,
    UpdateSink,
    conv_geometry,
)

RuleSpec = LocalRule | Mapping[str, LocalRule]

#: Modules allowed between a synapse and its neuron. Shape-preserving ones are identity for
#: credit routing; the others are replayed (see :class:`_Route`).
_TRANSPARENT: tuple[type[nn.Module], ...] = (
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
)

_HANDLES: weakref.WeakKeyDictionary[nn.Module, AttachHandle] = weakref.WeakKeyDictionary()
_CLAIMED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _all_finite(x: Tensor) -> bool:
    """Whether ``x`` has no NaN / inf: one reduction (a NaN or inf makes the sum non-finite),
    and the elementwise check only when the sum overflowed."""
    if math.isfinite(float(x.detach().sum())):
        return True
    return bool(torch.isfinite(x).all())


# A sequence checked once for NaN / inf covers every step sliced from it (above this size the
# steps are checked one by one: a first step should not wait for a whole data set's check).
_SEQUENCE_CHECK_LIMIT = 2**27


class _SequenceCheck:
    """Whether inputs that are views of one tensor (``x_t`` of ``for x_t in inputs``) are
    finite, from one check of that tensor per version (in-place writes bump the version)."""

    def __init__(self) -> None:
        self._base: weakref.ref[Tensor] | None = None
        self._version = -1
        self._finite = False

    def covers(self, x: Tensor) -> bool:
        """True if ``x`` is a view of a finite tensor (checked now or at an earlier step);
        False leaves the check of ``x`` itself to the caller."""
        base = x._base
        if base is None or base.numel() > _SEQUENCE_CHECK_LIMIT:
            return False
        if self._base is None or self._base() is not base or self._version != base._version:
            self._base, self._version = weakref.ref(base), base._version
            self._finite = _all_finite(base)
        return self._finite


def _autocast_unknown() -> bool:
    return True  # this torch cannot say cheaply: the per-device check decides


#: Whether autocast is on for any device type: one C call, made at every step.
_any_autocast_enabled: Callable[[], bool] = getattr(
    torch._C, "_is_any_autocast_enabled", _autocast_unknown
)


def _feature_rank(synapse: nn.Module) -> int:
    """Rank of one sample's input/output of a synapse: Linear 1, Conv1d 2, Conv2d 3."""
    if isinstance(synapse, nn.Conv2d):
        return 3
    if isinstance(synapse, nn.Conv1d):
        return 2
    return 1


class _Route:
    """Maps neuron-layout tensors back to the synapse's output layout.

    Shape-preserving modules (Dropout, BatchNorm, Identity) count as identity and Flatten as a
    reshape; pooling is replayed on the recorded synapse output and its backward (VJP) maps the
    tensor back, so max-pooling routes to the argmax and average pooling spreads evenly.
    """

    def __init__(self, between: list[nn.Module], feature_rank: int) -> None:
        self.replay = [m for m in between if not isinstance(m, _ELEMENTWISE)]
        self.needs_output = any(not isinstance(m, (nn.Flatten, nn.Unflatten)) for m in self.replay)
        self.feature_rank = feature_rank
        self.output: Tensor | None = None
        self.output_features: tuple[int, ...] | None = None

    def record(self, output: Tensor) -> None:
        self.output_features = tuple(output.shape[-self.feature_rank :])
        if self.needs_output:
            self.output = output.detach()

    @property
    def needs_record(self) -> bool:
        """Whether the synapse output must be recorded (a Flatten or pooling in between)."""
        return bool(self.replay)

    def __call__(self, tensor: Tensor) -> Tensor:
        if not self.replay:
            return tensor  # only shape-preserving modules in between
        steps, batch = tensor.shape[:2]
        assert self.output_features is not None
        if not self.needs_output:
            return tensor.reshape(steps, batch, *self.output_features)
        assert self.output is not None
        with torch.enable_grad():
            start = self.output.detach().requires_grad_(True)
            out = start
            for module in self.replay:
                out = module(out)
            (routed,) = torch.autograd.grad(out, start, tensor.reshape(out.shape).to(out.dtype))
        return routed.reshape(steps, batch, *self.output_features)


@dataclass
class _Pair:
    synapse_name: str
    neuron_name: str
    synapse: nn.Module
    adapter: NeuronAdapter
    rule: LocalRule
    route: _Route
    state: RuleState = field(default_factory=dict)
    pending_input: Tensor | None = None
    #: Gradient rules: the synapse input as it was in the autograd graph (before the cut).
    input_in_graph: Tensor | None = None
    #: Gradient rules: the view of the latest forward call, consumed by backward().
    view: PairView | None = None
    #: Gradient rules: grad mode was switched off for the synapse's call (restored after it).
    graph_cut: bool = False
    #: The NaN / inf check of the sequence the synapse's inputs are sliced from.
    sequence_check: _SequenceCheck = field(default_factory=_SequenceCheck)

    def __post_init__(self) -> None:
        self.rank = _feature_rank(self.synapse)
        self.gradient = isinstance(self.rule, GradientRule)
        self.multistep = self.adapter.multistep
        adapter = self.adapter
        self.read_spec: Callable[[], NeuronSpec] = lambda: adapter.spec
        self.name = f"{self.synapse_name}->{self.neuron_name}"


def _events_by_registration(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    events: list[tuple[str, str, nn.Module]] = []

    def visit(name: str, module: nn.Module) -> None:
        events.append(("enter", name, module))
        for child_name, child in module.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)
        events.append(("exit", name, module))

    visit("", model)
    return events


def _events_by_tracing(model: nn.Module, example_input: Any) -> list[tuple[str, str, nn.Module]]:
    events: list[tuple[str, str, nn.Module]] = []
    hooks: list[RemovableHandle] = []
    for name, module in model.named_modules():
        hooks.append(
            module.register_forward_pre_hook(lambda m, a, n=name: events.append(("enter", n, m)))
        )
        hooks.append(
            module.register_forward_hook(lambda m, a, o, n=name: events.append(("exit", n, m)))
        )
    adapters = {}
    for name, module in model.named_modules():
        cls = adapter_for(module)
        if cls is not None:
            with contextlib.suppress(UnsupportedModuleError):
                adapters[name] = cls(module)
    saved_states = {name: a.state_dict() for name, a in adapters.items()}
    modes = {m: m.training for m in model.modules()}
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            if isinstance(example_input, tuple):
                model(*example_input)
            elif isinstance(example_input, dict):
                model(**example_input)
            else:
                model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
        for name, state in saved_states.items():
            adapters[name].load_state_dict(state)
    return events


def _discover(
    events: list[tuple[str, str, nn.Module]],
) -> list[tuple[str, str, list[nn.Module]]]:
    """(synapse name, neuron name, modules between) for every pair, in call order."""
    pairs: dict[tuple[str, str], list[nn.Module]] = {}
    candidate: tuple[str, list[nn.Module]] | None = None
    neuron_stack: list[str] = []
    for kind, name, module in events:
        if kind == "exit":
            if neuron_stack and neuron_stack[-1] == name:
                neuron_stack.pop()
            continue
        if is_framework_neuron(module):
            if neuron_stack:
                continue  # a cell run by a wrapper neuron (Norse Lift): the wrapper is the neuron
            neuron_stack.append(name)
            if candidate is not None:
                pairs.setdefault((candidate[0], name), candidate[1])
                candidate = None
        elif neuron_stack:
            if isinstance(module, SYNAPSE_TYPES):
                pairs.setdefault((name, neuron_stack[-1]), [])
        elif isinstance(module, SYNAPSE_TYPES):
            candidate = (name, [])
        elif isinstance(module, _TRANSPARENT):
            if candidate is not None:
                candidate[1].append(module)
        elif len(module._modules) == 0 and candidate is not None:
            candidate = None  # an unknown leaf module breaks the pair
    return [(s, n, between) for (s, n), between in pairs.items()]


def _select_rule(rule: RuleSpec, synapse_name: str, neuron_name: str) -> LocalRule | None:
    if isinstance(rule, LocalRule):
        return rule
    for pattern, candidate in rule.items():
        if fnmatch.fnmatchcase(synapse_name, pattern) or fnmatch.fnmatchcase(neuron_name, pattern):
            return candidate
    return None


class _CopyRefusal:
    """A hooked module's ``__deepcopy__`` and ``__reduce_ex__`` while it is attached (instance
    attributes, removed by ``detach()``): ``copy.copy``, ``copy.deepcopy`` and pickling of the
    module, and so of any model holding it, raise. A copy would share the handle's hooks, and
    its forward calls would train the original model with the copy's inputs."""

    NAMES = ("__deepcopy__", "__reduce_ex__")

    def __init__(self, module_name: str, module: nn.Module) -> None:
        self.message = (
            f"module {module_name!r} ({type(module).__name__}) has a plasticity_plugins rule "
            "attached: a copy of it would keep the handle's hooks and train the original model, "
            "and a pickle cannot hold them. Copy or save the weights instead "
            "(copy.deepcopy(model.state_dict()), torch.save(model.state_dict(), path); the "
            "rules' state is handle.state_dict()), or call handle.detach() first."
        )

    def __call__(self, *_: Any) -> NoReturn:
        raise AttachError(self.message)

    @classmethod
    def install(cls, module: nn.Module, module_name: str) -> None:
        """Refuse copies of ``module`` (unless its instance defines its own copy methods)."""
        if not any(name in module.__dict__ for name in cls.NAMES):
            refusal = cls(module_name, module)
            for name in cls.NAMES:
                module.__dict__[name] = refusal

    @classmethod
    def remove(cls, module: nn.Module) -> None:
        """Allow copies of ``module`` again."""
        for name in cls.NAMES:
            if isinstance(module.__dict__.get(name), cls):
                del module.__dict__[name]


class AttachHandle:
    """What :func:`attach` returns: controls the rules wired to one model.

    Attributes:
        model: the model.
        pairs: ``[(synapse name, neuron name), ...]`` with a rule, in call order.
    """

    def __init__(
        self,
        model: nn.Module,
        pairs: list[_Pair],
        adapters: dict[str, NeuronAdapter],
        sink: UpdateSink,
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        self.model = model
        self._pairs = pairs
        self._adapters = adapters
        self._sink = sink
        self._paused = False
        self._hooks: list[RemovableHandle] = []
        self._attached = True
        self._by_neuron: dict[str, list[_Pair]] = {}
        for pair in pairs:
            self._by_neuron.setdefault(pair.neuron_name, []).append(pair)
        self._steps_done = dict.fromkeys(self._by_neuron, 0)
        self._total_steps: int | None = None
        self._live_spikes: dict[str, Tensor] = {}
        #: Neurons whose synapse ran without an autograd graph in the current call.
        self._cut: set[str] = set()
        #: The latest output of each neuron with a gradient rule and no spike mask: 0/1 spikes,
        #: finite, so a synapse fed with one skips the NaN check (cleared by backward / reset).
        self._spike_outputs: dict[str, Tensor] = {}
        self._warned_restart: set[str] = set()
        #: > 0 while handle.backward runs autograd (the spike leaves' hooks then stay quiet).
        self._in_backward = 0
        self._gradient_pairs = [p for p in pairs if p.gradient]
        self._signals = {p.rule.signal for p in self._gradient_pairs}  # type: ignore[attr-defined]
        self._owned = {
            id(param)
            for p in self._gradient_pairs
            for param in (p.synapse.weight, getattr(p.synapse, "bias", None))
            if isinstance(param, Tensor)
        }
        self._owned |= {
            id(param) for p in self._gradient_pairs for param in p.adapter.module.parameters()
        }
        for pair in pairs:
            _CopyRefusal.install(pair.synapse, pair.synapse_name)
            self._hooks.append(pair.synapse.register_forward_pre_hook(self._synapse_pre_hook(pair)))
            if pair.route.needs_record or pair.gradient:
                self._hooks.append(
                    pair.synapse.register_forward_hook(self._synapse_hook(pair), always_call=True)
                )
        for name, adapter in adapters.items():
            _CopyRefusal.install(adapter.module, name)
            adapter.detach_state = any(p.rule.detach_neuron_state for p in self._by_neuron[name])
            adapter.install(self._neuron_callback(name))
            if any(isinstance(p.rule, GradientRule) for p in self._by_neuron[name]):
                self._hooks.append(adapter.module.register_forward_hook(self._live_hook(name)))
        for pair in pairs:
            if isinstance(pair.rule, GradientRule):
                for param in (pair.synapse.weight, getattr(pair.synapse, "bias", None)):
                    if isinstance(param, Tensor) and param.requires_grad:
                        self._hooks.append(param.register_hook(self._refuse_autograd(pair)))
        if optimizer is not None:
            self._hooks.append(
                optimizer.register_step_pre_hook(eager_hook(lambda opt, a, k: self.sync()))
            )
            self._hooks.append(
                optimizer.register_step_post_hook(eager_hook(lambda opt, a, k: self._after_step()))
            )

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """``[(synapse name, neuron name), ...]`` of the pairs that learn."""
        return [(p.synapse_name, p.neuron_name) for p in self._pairs]

    @property
    def adapters(self) -> dict[str, NeuronAdapter]:
        """The neuron adapters by neuron name (threshold offsets, spike masks, specs)."""
        return dict(self._adapters)

    def _check_attached(self) -> None:
        if not self._attached:
            raise AttachError("this handle was detached; attach the model again")

    def _synapse_pre_hook(self, pair: _Pair) -> Callable[..., tuple[Any, ...] | None]:
        rank = pair.rank
        multistep = pair.multistep
        accepted = (rank + 1, rank + 2) if multistep else (rank + 1,)
        weight = pair.synapse.weight
        bias = getattr(pair.synapse, "bias", None)
        assert isinstance(weight, Tensor)
        spike_outputs = self._spike_outputs  # cleared in place, never replaced
        covers = pair.sequence_check.covers

        @eager_hook
        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if self._paused:
                return None
            x = args[0]
            if not isinstance(x, Tensor):
                raise InputError(f"{pair.synapse_name}: expected a Tensor input, got {type(x)}")
            if x.dim() not in accepted:
                layout = "[T, B, *features] or [T*B, *features]" if multistep else "[B, *features]"
                raise InputError(
                    f"{pair.synapse_name} ({type(module).__name__}) feeding neuron "
                    f"{pair.neuron_name!r}: input of shape {tuple(x.shape)} has rank {x.dim()}; "
                    f"a {'multi' if multistep else 'single'}-step neuron needs {layout} with "
                    f"{rank} feature dimension(s), i.e. rank {' or '.join(map(str, accepted))}"
                )
            if x.dtype != weight.dtype or x.device != weight.device:
                raise InputError(
                    f"{pair.synapse_name}: input is {x.dtype} on {x.device} but the weight is "
                    f"{weight.dtype} on {weight.device}; move the input to match the model"
                )
            # The spikes a neuron of this handle just produced are 0/1: no check needed; a step
            # of a sequence already checked as a whole neither.
            for out in spike_outputs.values():
                if x is out:
                    break
            else:
                if not covers(x) and not _all_finite(x):
                    raise InputError(
                        f"{pair.synapse_name}: input of shape {tuple(x.shape)} contains NaN or "
                        "inf; plastic synapses need finite inputs"
                    )
            pair.pending_input = x.detach() if x.requires_grad else x
            if pair.gradient and torch.is_grad_enabled():
                # Cut the graph here: layers meet only through the rule's own learning signal.
                pair.input_in_graph = x if x.requires_grad else None
                if weight.requires_grad or (isinstance(bias, Tensor) and bias.requires_grad):
                    # The rule owns the synapse's gradient: its call records no graph at all
                    # (the synapse hook switches grad mode back on right after it), and the
                    # neuron's spikes become a leaf of the step's graph (see _live_hook).
                    torch.set_grad_enabled(False)
                    pair.graph_cut = True
                    self._cut.add(pair.neuron_name)
                    return None
                if x.requires_grad:
                    return (x.detach(), *args[1:])
            return None

        return hook

    def _live_hook(self, neuron_name: str) -> Callable[..., Any]:
        @eager_hook
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if self._paused:
                return None
            single = isinstance(output, Tensor)
            spikes = output if single else output[0]
            replaced = None
            if spikes.requires_grad:
                self._live_spikes[neuron_name] = spikes
            elif neuron_name in self._cut and torch.is_grad_enabled():
                # The synapse ran without a graph: the spikes start the step's graph as a leaf,
                # from which handle.backward takes dLoss/ds.
                spikes = spikes.detach().requires_grad_(True)
                spikes.register_hook(self._refuse_leaf_backward(neuron_name))
                self._live_spikes[neuron_name] = spikes
                replaced = spikes if single else (spikes, *output[1:])
            self._cut.discard(neuron_name)
            if self._adapters[neuron_name].spike_mask is None:
                self._spike_outputs[neuron_name] = spikes
            else:
                self._spike_outputs.pop(neuron_name, None)
            return replaced

        return hook

    def _refuse_leaf_backward(self, neuron_name: str) -> Callable[[Tensor], None]:
        def hook(grad: Tensor) -> None:
            if self._in_backward:
                return
            rules = sorted({type(p.rule).__name__ for p in self._by_neuron[neuron_name]})
            raise AttachError(
                f"{', '.join(rules)} owns the weights feeding {neuron_name!r}, but autograd is "
                "computing a gradient through its spikes (loss.backward() would not train "
                "them, and across steps it would rebuild BPTT). Call handle.backward(loss) at "
                "every step instead of loss.backward(), or detach the handle to train with BPTT."
            )

        return hook

    def _refuse_autograd(self, pair: _Pair) -> Callable[[Tensor], None]:
        def hook(grad: Tensor) -> None:
            raise AttachError(
                f"{type(pair.rule).__name__} owns the weights of {pair.name}, but autograd is "
                "computing their gradient (loss.backward() across steps would rebuild BPTT "
                "through the surrogate). Call handle.backward(loss) at every step instead of "
                "loss.backward(), or detach the handle to train with BPTT."
            )

        return hook

    def _synapse_hook(self, pair: _Pair) -> Callable[..., None]:
        @eager_hook
        def hook(module: nn.Module, args: tuple[Any, ...], output: Tensor | None) -> None:
            if pair.graph_cut:
                pair.graph_cut = False
                torch.set_grad_enabled(True)
            if output is not None and not self._paused and pair.route.needs_record:
                pair.route.record(output)

        return hook

    def _neuron_callback(self, neuron_name: str) -> Callable[[NeuronObservation], None]:
        pairs = self._by_neuron[neuron_name]
        steps_done = self._steps_done  # reset in place, never replaced
        run_rule = self._run_rule

        def on_step(observation: NeuronObservation) -> None:
            if self._paused:
                return
            if _any_autocast_enabled():
                self._refuse_unscaled_autocast(observation.s)
            first_step = steps_done[neuron_name]
            if observation.restarted and first_step and neuron_name not in self._warned_restart:
                self._warned_restart.add(neuron_name)
                warnings.warn(
                    f"{neuron_name}: the neuron restarted from its initial state (the "
                    "framework's own reset, or a fresh state passed in) but the rules kept "
                    f"their traces of the {first_step} step(s) before; call handle.reset() at "
                    "the start of every sequence, which resets both (warned once per neuron)",
                    SequenceResetWarning,
                    stacklevel=2,
                )
            for pair in pairs:
                x = pair.pending_input
                if x is None:
                    continue  # the synapse did not run since the last step (e.g. first step)
                pair.pending_input = None
                run_rule(pair, x, observation, first_step)
            steps_done[neuron_name] = first_step + observation.steps

        return on_step

    def _refuse_unscaled_autocast(self, spikes: Tensor) -> None:
        if self._sink.grad_scaler is None and torch.is_autocast_enabled(spikes.device.type):
            raise AttachError(
                "autocast is active but attach() got no grad_scaler: local updates are written "
                "into .grad outside backward, and a GradScaler would unscale them by ~65536. "
                "Pass attach(..., grad_scaler=scaler) (a GradScaler(enabled=False) for bf16 "
                "autocast without scaling)."
            )

    def _run_rule(
        self, pair: _Pair, x: Tensor, observation: NeuronObservation, first_step: int
    ) -> None:
        steps, batch = observation.steps, observation.batch
        one_step = False
        if x.dim() == pair.rank + 1:
            if x.shape[0] != steps * batch:
                raise InputError(
                    f"{pair.name}: synapse input {tuple(x.shape)} does not match the neuron's "
                    f"output {tuple(observation.s.shape)} (T={steps}, B={batch})"
                )
            if steps == 1:
                one_step = True  # the view adds the time axis if a rule reads x
            else:
                x = x.reshape(steps, batch, *x.shape[1:])
        elif x.shape[0] != steps or x.shape[1] != batch:
            raise InputError(
                f"{pair.name}: synapse input {tuple(x.shape)} and neuron output "
                f"{tuple(observation.s.shape)} disagree on [T, B]"
            )
        view = PairView(  # positional: built at every call of every pair
            pair.name,
            pair.synapse,
            pair.read_spec,
            x,
            observation,
            pair.route,
            self._sink,
            first_step,
            self._total_steps,
            pair.adapter,
            one_step,
        )
        pair.rule.step(view, pair.state)
        if pair.gradient:
            pair.view = view

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """A context in which the model runs but nothing learns (evaluation).

        Rules neither update ``.grad`` nor advance their traces.
        """
        previous, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = previous

    def reset(self, steps: int | None = None) -> None:
        """Start a new sequence: reset the neurons' state and the rules' traces.

        Args:
            steps: the sequence length T, for rules that need it (S-TLLR's ``delay_ls``).
        """
        self._check_attached()
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
        ):
            raise InputError(f"handle.reset: steps must be a positive int, got {steps!r}")
        for adapter in self._adapters.values():
            adapter.reset()
        for pair in self._pairs:
            pair.rule.reset_state(pair.state)
            pair.pending_input = None
            pair.input_in_graph = None
            pair.view = None
        for name in self._steps_done:
            self._steps_done[name] = 0
        self._total_steps = steps
        self._live_spikes.clear()
        self._spike_outputs.clear()
        self._cut.clear()

    def backward(self, loss: Tensor | None = None, *, target: Tensor | None = None) -> None:
        """Deliver this step's learning signal to the gradient rules (S-TLLR, DECOLLE).

        Call it once per forward call, where a BPTT loop would accumulate the loss: the
        learning signal of a step meets the eligibility of the same step, and the step's graph
        is freed right after, so memory does not grow with the number of steps.

        Args:
            loss: the loss of this step (rules with ``signal="bp"`` or ``"dfa"``). With AMP pass
                ``scaler.scale(loss)``, as you would to ``loss.backward()``.
            target: integer class labels ``[B]`` (rules with ``signal="local"``, DECOLLE).

        Parameters that no rule owns (e.g. a non-spiking readout after the last neuron) get
        ordinary autograd gradients of ``loss`` within the step.
        """
        self._check_attached()
        pairs = self._gradient_pairs
        if not pairs:
            raise AttachError("handle.backward() needs a gradient rule (STLLR, DECOLLE) attached")
        missing = [p.name for p in pairs if p.view is None]
        if missing:
            raise StateError(
                f"handle.backward() before a forward call of {missing} since the last "
                "handle.reset() / backward(): run the model's forward for this step first"
            )
        self._in_backward += 1
        try:
            self._backward(pairs, loss, target)
        finally:
            self._in_backward -= 1
        for pair in pairs:
            pair.view = None
            pair.input_in_graph = None
        self._live_spikes.clear()
        self._spike_outputs.clear()

    def _backward(self, pairs: list[_Pair], loss: Tensor | None, target: Tensor | None) -> None:
        signals = self._signals
        deltas: dict[str, Tensor] = {}
        if signals & {"bp", "dfa"}:
            deltas = self._loss_deltas(loss, pairs)
        elif loss is not None:
            raise InputError(
                "handle.backward(loss): the attached rules learn from a target (local losses); "
                "pass target= instead"
            )
        if "local" in signals and target is None:
            raise InputError("handle.backward(): DECOLLE needs target= (integer labels [B])")
        top = pairs[-1].neuron_name
        for pair in reversed(pairs):
            rule = pair.rule
            assert isinstance(rule, GradientRule) and pair.view is not None
            view = pair.view
            spikes = view.neuron.s
            if rule.signal == "local":
                assert target is not None
                local = rule.local_delta(view, pair.state, spikes, target)
                if local is None:
                    continue
                delta = local
            elif rule.signal == "dfa" and pair.neuron_name != top:
                error = deltas.get(top, torch.zeros_like(self._as_sequence(top)))
                delta = rule.feedback_delta(view, pair.state, error.flatten(2))
            else:
                delta = deltas.get(pair.neuron_name, torch.zeros_like(spikes))
            passed_down = rule.learn(view, pair.state, delta)
            if passed_down is not None:
                self._pass_down(pair, view, passed_down, deltas)

    def _as_sequence(self, neuron_name: str) -> Tensor:
        spikes = self._live_spikes[neuron_name]
        return spikes if self._adapters[neuron_name].multistep else spikes.unsqueeze(0)

    def _loss_deltas(self, loss: Tensor | None, pairs: list[_Pair]) -> dict[str, Tensor]:
        """``dloss/ds`` of every neuron's spikes along the paths inside this step."""
        if loss is None or not isinstance(loss, Tensor) or loss.numel() != 1:
            raise InputError(
                "handle.backward(loss): loss must be the scalar loss tensor of this step, got "
                f"{loss if not isinstance(loss, Tensor) else tuple(loss.shape)}"
            )
        if not loss.requires_grad:
            raise InputError(
                "handle.backward(loss): the loss does not require grad; compute it from the "
                "model's output with gradients enabled (not under torch.no_grad())"
            )
        names = [n for n in self._live_spikes if n in self._by_neuron]
        owned = self._owned
        others = [p for p in self.model.parameters() if p.requires_grad and id(p) not in owned]
        inputs = [self._live_spikes[n] for n in names] + others
        grads = torch.autograd.grad(loss, inputs, allow_unused=True, retain_graph=True)
        for param, grad in zip(others, grads[len(names) :], strict=True):
            if grad is not None:
                self._sink.accumulator(param).add_(grad)
        deltas = {}
        for name, grad in zip(names, grads[: len(names)], strict=True):
            if grad is not None:
                deltas[name] = grad if self._adapters[name].multistep else grad.unsqueeze(0)
        return deltas

    def _pass_down(
        self, pair: _Pair, view: PairView, signal: Tensor, deltas: dict[str, Tensor]
    ) -> None:
        """BP: pull ``signal`` back through the synapse to the neurons that fed it."""
        source = pair.input_in_graph
        if source is None:
            return
        live = self._live_spikes
        # A leaf source that is a neuron's spikes (the usual case: spikes straight into the
        # synapse): its gradient is the pulled-back signal itself, no autograd call needed.
        direct = (
            next((n for n in live if live[n] is source), None) if source.grad_fn is None else None
        )
        if direct is None:
            upstream = [n for n in live if n != pair.neuron_name and live[n] is not source] + [
                n for n in live if live[n] is source
            ]
            if not upstream:
                return
        routed = view.to_synapse_output(signal)
        steps, batch = routed.shape[:2]
        weight = pair.synapse.weight
        assert isinstance(weight, Tensor)
        flat_input = view.x.reshape(steps * batch, *view.x.shape[2:])
        grad_input = input_vjp(
            routed.reshape(steps * batch, *routed.shape[2:]),
            weight.detach(),
            tuple(flat_input.shape),
            conv_geometry(pair.synapse),
        ).reshape(source.shape)
        if direct is not None:
            grads: Sequence[Tensor | None] = (grad_input,)
            upstream = [direct]
        else:
            sources = [live[n] for n in upstream]
            grads = torch.autograd.grad(
                source, sources, grad_input, allow_unused=True, retain_graph=True
            )
        for name, grad in zip(upstream, grads, strict=True):
            if grad is None:
                continue
            grad = grad if self._adapters[name].multistep else grad.unsqueeze(0)
            deltas[name] = grad if name not in deltas else deltas[name] + grad

    def predictions(self) -> dict[str, Tensor]:
        """Per pair, the rule's class predictions since reset (DECOLLE: majority vote)."""
        out = {}
        for pair in self._pairs:
            predict = getattr(pair.rule, "predictions", None)
            if predict is not None:
                prediction = predict(pair.state)
                if prediction is not None:
                    out[pair.name] = prediction
        return out

    def _after_step(self) -> None:
        with torch.no_grad():
            for pair in self._pairs:
                pair.rule.after_optimizer_step(pair.synapse, pair.state)

    def sync(self) -> None:
        """Average pending updates across ranks into ``.grad`` (under torch.distributed).

        Called automatically before each step of the optimizer handed to :func:`attach`;
        a no-op without torch.distributed.
        """
        self._sink.sync()

    def state_dict(self) -> dict[str, Any]:
        """The rules' per-pair state and the neurons' hidden state (detached copies), and the
        rule class of each pair (checked by :meth:`load_state_dict`)."""
        self._check_attached()
        return {
            "rules": {
                p.name: {k: v.detach().clone() for k, v in p.state.items()} for p in self._pairs
            },
            "neurons": {name: a.state_dict() for name, a in self._adapters.items()},
            "rule_types": {p.name: type(p.rule).__name__ for p in self._pairs},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (mid-sequence restores continue exactly).

        Raises:
            InputError: ``state`` is not a :meth:`state_dict` (its layout or its tensors).
            AttachError: it was saved from other pairs, neurons or rule classes.
            The handle keeps its state when loading fails.
        """
        self._check_attached()
        rules, neurons = self._checked_state(state)
        previous_rules = {p.name: dict(p.state) for p in self._pairs}
        previous_neurons = {name: a.state_dict() for name, a in self._adapters.items()}
        try:
            for pair in self._pairs:
                pair.state.clear()
                pair.state.update({k: v.clone() for k, v in rules[pair.name].items()})
            for name, adapter in self._adapters.items():
                adapter.load_state_dict(neurons[name])
        except Exception:
            for pair in self._pairs:
                pair.state.clear()
                pair.state.update(previous_rules[pair.name])
            for name, adapter in self._adapters.items():
                adapter.load_state_dict(previous_neurons[name])
            raise

    def _checked_state(self, state: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """``(rules, neurons)`` of a :meth:`state_dict`, after checking its layout and names."""
        layout = (
            "handle.state_dict()'s {'rules': {pair: {name: tensor}}, 'neurons': {neuron: "
            "{name: tensor}}, 'rule_types': {pair: rule class}}"
        )
        if not isinstance(state, Mapping) or not {"rules", "neurons"} <= set(state):
            got = f"keys {sorted(state)}" if isinstance(state, Mapping) else type(state).__name__
            raise InputError(f"handle.load_state_dict: expected {layout}, got {got}")
        rules, neurons = state["rules"], state["neurons"]
        for part, entries in (("rules", rules), ("neurons", neurons)):
            if not isinstance(entries, Mapping) or not all(
                isinstance(entry, Mapping) and all(isinstance(v, Tensor) for v in entry.values())
                for entry in entries.values()
            ):
                raise InputError(
                    f"handle.load_state_dict: state[{part!r}] must map names to dicts of "
                    f"tensors ({layout})"
                )
        expected_rules = {p.name for p in self._pairs}
        if set(rules) != expected_rules or set(neurons) != set(self._adapters):
            raise AttachError(
                f"state for pairs {sorted(rules)} / neurons {sorted(neurons)} does not match this "
                f"handle's pairs {sorted(expected_rules)} / neurons {sorted(self._adapters)}"
            )
        saved_types = state.get("rule_types", {})  # optional: earlier states lack it
        wrong = {
            p.name: (saved_types[p.name], type(p.rule).__name__)
            for p in self._pairs
            if p.name in saved_types and saved_types[p.name] != type(p.rule).__name__
        }
        if wrong:
            listed = ", ".join(f"{n}: saved {a}, attached {b}" for n, (a, b) in wrong.items())
            raise AttachError(f"state saved from other rules than this handle's ({listed})")
        return rules, neurons

    def detach(self) -> None:
        """Remove every hook and adapter change: the model is exactly as before attach()."""
        if not self._attached:
            return
        for hook in self._hooks:
            hook.remove()
        for adapter in self._adapters.values():
            adapter.uninstall()
        for pair in self._pairs:
            _CLAIMED.discard(pair.synapse)
            _CopyRefusal.remove(pair.synapse)
        for adapter in self._adapters.values():
            _CLAIMED.discard(adapter.module)
            _CopyRefusal.remove(adapter.module)
        _HANDLES.pop(self.model, None)
        self._attached = False

    def __repr__(self) -> str:
        lines = [f"{p.name}: {p.rule}" for p in self._pairs]
        return "AttachHandle(\n  " + ",\n  ".join(lines) + "\n)"


def _refuse_buffer_broadcast(model: nn.Module, adapters: dict[str, NeuronAdapter]) -> None:
    """DDP(broadcast_buffers=True) would overwrite every rank's neuron state with rank 0's."""
    if not (isinstance(model, nn.parallel.DistributedDataParallel) and model.broadcast_buffers):
        return
    for name, adapter in adapters.items():
        buffers = {b for b, _ in adapter.module.named_buffers(recurse=False)}
        state_in_buffers = sorted(buffers & set(adapter.state_dict()))
        if state_in_buffers:
            raise AttachError(
                f"{name} keeps its state {state_in_buffers} in buffers, and "
                "DistributedDataParallel(broadcast_buffers=True) copies rank 0's buffers to every "
                "rank at each forward with gradients enabled, overwriting each rank's membrane. "
                "Wrap the model with DistributedDataParallel(..., broadcast_buffers=False)."
            )


def is_attached(model: nn.Module) -> bool:
    """Whether :func:`attach` wired rules to ``model`` (and they were not detached)."""
    return model in _HANDLES


def attach(
    model: nn.Module,
    rule: RuleSpec,
    example_input: Any = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    grad_scaler: Any = None,
) -> AttachHandle:
    """Attach local learning rules to every (synapse, neuron) pair of ``model``.

    Args:
        model: a snnTorch, SpikingJelly or Norse model (any ``nn.Module``).
        rule: one rule for every pair, or a mapping from ``fnmatch`` patterns of module names
            (matched against the synapse name, then the neuron name; first match wins) to
            rules. Pairs that match nothing keep plain autograd.
        example_input: an input for one forward call (a tuple is unpacked as positional
            arguments, a dict as keywords). Discovery then follows the traced call order; the
            trace runs in eval mode without gradients, and the RNG and neuron states are
            restored afterwards. Without it the registration order is used (right for
            ``nn.Sequential`` and models declared in the order forward() uses them).
        optimizer: if given, :meth:`AttachHandle.sync` runs before each of its steps (needed
            under torch.distributed), and each rule's ``after_optimizer_step`` (weight bounds,
            normalisation) after each step.
        grad_scaler: an AMP ``GradScaler``; local updates are scaled with it. Required when
            autocast is active.

    Returns:
        An :class:`AttachHandle`. Until ``handle.detach()``, ``torch.compile(model)`` runs the
        hooks eagerly (same updates), and copying or pickling the model raises
        :class:`AttachError` (a copy would share the hooks and train the original model).

    Raises:
        AttachError: the model (or one of its modules) is already attached, no pair was
            found, or a rule mapping matched no pair.
        UnsupportedModuleError: a neuron of a known framework that no adapter supports, or a
            synapse or configuration the rule cannot update.

    Example:
        >>> import torch, snntorch as snn, plasticity_plugins
        >>> from plasticity_plugins.rules import STDP
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 4), snn.Leaky(beta=0.9, init_hidden=True))
        >>> handle = plasticity_plugins.attach(net, STDP())
        >>> handle.pairs
        [('0', '1')]
        >>> plasticity_plugins.is_attached(net)
        True
        >>> handle.detach(); plasticity_plugins.is_attached(net)
        False
    """
    if model in _HANDLES:
        raise AttachError(
            f"{type(model).__name__} is already attached; call handle.detach() before attaching "
            "again"
        )
    claimed = [n for n, m in model.named_modules() if m in _CLAIMED]
    if claimed:
        raise AttachError(
            f"modules {claimed} of {type(model).__name__} already have rules attached through "
            "another model; detach that handle first"
        )
    if isinstance(rule, Mapping):
        bad = {k: type(v).__name__ for k, v in rule.items() if not isinstance(v, LocalRule)}
        if bad:
            raise TypeError(f"attach: rule mapping values must be LocalRule objects, got {bad}")
    elif not isinstance(rule, LocalRule):
        raise TypeError(
            f"attach: rule must be a LocalRule or a mapping of patterns to rules, got {rule!r}"
        )

    unsupported = [
        f"{n} ({type(m).__module__}.{type(m).__name__})"
        for n, m in model.named_modules()
        if is_framework_neuron(m) and adapter_for(m) is None
    ]
    if unsupported:
        frameworks = sorted({type(m).__module__.split(".")[0] for m in model.modules()})
        listing = "; ".join(
            f"{fw}: {', '.join(supported_neurons(fw))}"
            for fw in frameworks
            if supported_neurons(fw)
        )
        raise UnsupportedModuleError(
            f"no adapter supports the neuron(s) {', '.join(unsupported)}. Supported: {listing}"
        )

    events = (
        _events_by_registration(model)
        if example_input is None
        else _events_by_tracing(model, example_input)
    )
    modules = dict(model.named_modules())
    adapters: dict[str, NeuronAdapter] = {}
    pairs: list[_Pair] = []
    for synapse_name, neuron_name, between in _discover(events):
        chosen = _select_rule(rule, synapse_name, neuron_name)
        if chosen is None:
            continue
        synapse = modules[synapse_name]
        chosen.check_synapse(synapse_name, synapse)
        if neuron_name not in adapters:
            neuron = modules[neuron_name]
            cls = adapter_for(neuron)
            assert cls is not None
            adapters[neuron_name] = cls(neuron)
        pairs.append(
            _Pair(
                synapse_name=synapse_name,
                neuron_name=neuron_name,
                synapse=synapse,
                adapter=adapters[neuron_name],
                rule=chosen,
                route=_Route(between, _feature_rank(synapse)),
            )
        )
    if not pairs:
        found = _discover(events)
        raise AttachError(
            f"no (synapse, neuron) pair of {type(model).__name__} got a rule. Pairs found: "
            f"{[(s, n) for s, n, _ in found] or 'none'}. A pair is an nn.Linear / nn.Conv1d / "
            "nn.Conv2d followed by a supported neuron (only Flatten, Dropout, pooling, BatchNorm "
            "in between); pass example_input if forward() calls layers in another order than "
            "they are declared"
        )

    _refuse_buffer_broadcast(model, adapters)
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    handle = AttachHandle(
        model, pairs, adapters, UpdateSink(grad_scaler, distributed=distributed), optimizer
    )
    _HANDLES[model] = handle
    for pair in pairs:
        _CLAIMED.add(pair.synapse)
    for adapter in adapters.values():
        _CLAIMED.add(adapter.module)
    return handle
