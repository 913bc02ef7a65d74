"""The comparison runner: every method x every framework on the same data, one result each.

For each framework (outer loop) and method, a fresh network is built from the same seed, trained
for ``epochs`` on the same spike sequences (one generator per run, seeded identically, so every
run sees the same batches and the same Poisson spikes) and tested. Each finished run is handed
to ``on_result`` at once (the CLI writes the result files there), so an interrupted comparison
keeps what finished.

Measured per run:

* accuracy (percent, test set), defined per method (:mod:`.methods`), and a learning curve:
  the test accuracy before training and after each fraction ``1 / evals_per_epoch`` of an
  epoch;
* ms per time step: the wall time of the training steps alone (encoding and evaluation
  excluded) over the number of time steps trained (batches x T), the first batch left out (it
  pays one-time costs: TorchScript compilation, CUDA initialisation);
* peak memory (MiB) of a training step above the memory on entry, the maximum over the run
  (:class:`.memory.PeakMemory`: resident memory on the CPU, allocated memory on CUDA).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import attach
from ..attach import AttachHandle
from ..errors import PlasticityError
from .frameworks import KITS, FrameworkKit
from .memory import PeakMemory
from .methods import METHODS, Method
from .probe import linear_probe


@dataclass(frozen=True)
class CompareConfig:
    """What to compare and how long to train.

    Attributes:
        rules: method names (:data:`.methods.METHODS`).
        frameworks: framework names (:data:`.frameworks.KITS`).
        dataset: a name of :func:`plasticity_plugins.data.available_datasets`.
        epochs: passes over the training set.
        steps: time steps T per sample (static data; event data use their own frames).
        batch_size: samples per training step.
        hidden: hidden layer sizes.
        train_size, test_size: subset sizes (None: the dataset's defaults).
        seed: seeds the initial weights, the batch order and the spike encoding.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        lr: Adam's learning rate of the gradient methods (scaled per framework by its weight
            units, :attr:`.frameworks.FrameworkKit.weight_scale`).
        max_rate: spike probability per step of a pixel at 1 (Poisson rate code).
        evals_per_epoch: points of the learning curve per epoch.
    """

    rules: tuple[str, ...] = tuple(METHODS)
    frameworks: tuple[str, ...] = tuple(KITS)
    dataset: str = "mnist-subset"
    epochs: int = 3
    steps: int = 25
    batch_size: int = 64
    hidden: tuple[int, ...] = (256,)
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0
    device: str = "cpu"
    lr: float = 2e-3
    max_rate: float = 1.0
    evals_per_epoch: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "steps", "batch_size", "evals_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"compare: {name} must be >= 1, got {getattr(self, name)}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"compare: hidden sizes must be >= 1, got {self.hidden}")
        if not 0 < self.max_rate <= 1:
            raise ValueError(f"compare: max_rate must be in (0, 1], got {self.max_rate}")

    @classmethod
    def quick(cls, **overrides: Any) -> CompareConfig:
        """The ``--quick`` settings: 1000 / 500 samples, T = 10, 784-128-10, 2 epochs, Adam 5e-3.

        About 40 s for every rule and framework on 2 CPU cores (36-42 s measured in a fresh
        venv), plus about 40 s once for compiling the C++ CPU kernels on first use.
        """
        settings: dict[str, Any] = {
            "epochs": 2,
            "lr": 5e-3,
            "steps": 10,
            "hidden": (128,),
            "train_size": 1000,
            "test_size": 500,
            "evals_per_epoch": 2,
        }
        settings.update(overrides)
        return cls(**settings)


@dataclass
class RunResult:
    """One (method, framework) run. ``status`` is ``"ok"`` or ``"failed"`` (see ``error``)."""

    rule: str
    framework: str
    status: str = "ok"
    error: str = ""
    label: str = ""
    accuracy: float = math.nan
    accuracy_definition: str = ""
    ms_per_step: float = math.nan
    peak_mib: float = math.nan
    memory_exact: bool = True
    train_seconds: float = math.nan
    curve: list[tuple[float, float]] = field(default_factory=list)
    framework_version: str | None = None
    details: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """A flat dict (the CSV row / JSON object)."""
        return asdict(self)


def step_loss(out: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of the output spikes ``[t, B, C]`` at each step, summed over the steps."""
    return F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]), reduction="sum") / len(y)


@dataclass
class _Run:
    """The live objects of one run."""

    method: Method
    kit: FrameworkKit
    net: nn.Module
    handle: AttachHandle | None
    optimizer: torch.optim.Optimizer

    def reset(self) -> None:
        """Start a sequence: the handle resets its neurons (every neuron here has a rule) and
        the rules' traces; without a handle, the framework's own reset."""
        if self.handle is not None:
            self.handle.reset()
        else:
            self.kit.reset(self.net)

    def train_batch(self, x: Tensor, y: Tensor) -> None:
        kind, kit, net, handle = self.method.kind, self.kit, self.net, self.handle
        self.optimizer.zero_grad()
        self.reset()
        if kind == "bptt":
            out, _ = kit.forward(net, x)
            step_loss(out, y).backward()
        elif kind == "unsupervised":
            with torch.no_grad():
                kit.forward(net, x)
        else:
            assert handle is not None
            chunk = len(x) if kit.multistep else 1
            state = None
            for start in range(0, len(x), chunk):
                out, state = kit.forward(net, x[start : start + chunk], state)
                if self.method.name == "decolle":
                    handle.backward(target=y)
                else:
                    handle.backward(step_loss(out, y))
        self.optimizer.step()

    def spike_counts(self, x: Tensor) -> Tensor:
        """Output spike counts of a test sequence ``[B, C]``, nothing learned."""
        self.reset()
        with torch.no_grad():
            if self.handle is None:
                return self.kit.forward(self.net, x)[0].sum(0)
            if self.method.name == "decolle":
                # the rule must see the test sequence to vote; without handle.backward() it
                # writes no gradient
                return self.kit.forward(self.net, x)[0].sum(0)
            with self.handle.paused():
                return self.kit.forward(self.net, x)[0].sum(0)


def _batches(size: int, batch_size: int, generator: torch.Generator | None) -> Iterator[Tensor]:
    order = torch.randperm(size, generator=generator) if generator is not None else None
    for start in range(0, size, batch_size):
        if order is None:
            yield torch.arange(start, min(start + batch_size, size))
        else:
            yield order[start : start + batch_size]


class Comparison:
    """Runs :class:`CompareConfig` on a loaded dataset.

    Args:
        config: the settings.
        dataset: a :class:`plasticity_plugins.data.SpikeDataset`.
        progress: show tqdm progress bars (stderr).
    """

    def __init__(self, config: CompareConfig, dataset: Any, progress: bool = True) -> None:
        self.config = config
        self.dataset = dataset
        self.progress = progress
        self.device = torch.device(config.device)
        self.inputs = math.prod(dataset.input_shape)

    # ------------------------------------------------------------------------------ data
    def _spikes(self, index: Tensor, train: bool, generator: torch.Generator) -> Tensor:
        source = self.dataset.x_train if train else self.dataset.x_test
        steps = self.config.steps if self.dataset.kind == "static" else None
        spikes = self.dataset.to_spikes(
            source[index], steps, max_rate=self.config.max_rate, generator=generator
        )
        return spikes.flatten(2).to(self.device)

    def _test_pass(self, run: _Run) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Output spike counts, labels and DECOLLE's per-layer votes on the test set."""
        generator = torch.Generator().manual_seed(10_000 + self.config.seed)
        counts, labels = [], []
        votes: dict[str, list[Tensor]] = {}
        for index in _batches(len(self.dataset.y_test), 250, None):
            counts.append(run.spike_counts(self._spikes(index, False, generator)).cpu())
            labels.append(self.dataset.y_test[index])
            if run.method.name == "decolle" and run.handle is not None:
                for name, prediction in run.handle.predictions().items():
                    votes.setdefault(name, []).append(prediction.cpu())
        return torch.cat(counts), torch.cat(labels), {k: torch.cat(v) for k, v in votes.items()}

    def _train_features(self, run: _Run) -> Tensor:
        generator = torch.Generator().manual_seed(20_000 + self.config.seed)
        return torch.cat(
            [
                run.spike_counts(self._spikes(index, True, generator)).cpu()
                for index in _batches(len(self.dataset.y_train), 250, None)
            ]
        )

    # ------------------------------------------------------------------------ evaluation
    def evaluate(self, run: _Run) -> tuple[float, dict[str, float]]:
        """Test accuracy (percent) as the method defines it, and per-layer details."""
        counts, labels, votes = self._test_pass(run)
        details: dict[str, float] = {}
        if run.method.kind == "unsupervised":
            predictions = linear_probe(
                self._train_features(run),
                self.dataset.y_train,
                counts,
                self.dataset.num_classes,
            )
            return _percent(predictions, labels), details
        output = _percent(counts.argmax(1), labels)
        if not votes:
            return output, details
        details["output spike counts"] = output
        for name, prediction in votes.items():
            details[f"readout vote {name}"] = _percent(prediction, labels)
        names = list(votes)
        # DECOLLE's classifier: the widest readout before the 10-neuron output layer
        headline = names[-2] if len(names) > 1 else names[-1]
        return details[f"readout vote {headline}"], details

    # ------------------------------------------------------------------------------ runs
    def build(self, method: Method, kit: FrameworkKit) -> _Run:
        """A fresh seeded network with the method's rule attached and its optimizer."""
        torch.manual_seed(self.config.seed)
        outputs = () if method.kind == "unsupervised" else (self.dataset.num_classes,)
        sizes = (self.inputs, *self.config.hidden, *outputs)
        net = kit.build(sizes, self.device)
        handle = None
        if method.make_rule is not None:
            rule = method.make_rule(self.dataset.num_classes, kit.weight_scale)
            if method.kind == "unsupervised":
                assert method.init_scale is not None
                synapse = next(m for m in net.modules() if isinstance(m, nn.Linear))
                with torch.no_grad():
                    synapse.weight.uniform_(-method.init_scale, method.init_scale)
                    synapse.weight.mul_(kit.weight_scale)
                    if synapse.bias is not None:
                        synapse.bias.zero_()
                optimizer: torch.optim.Optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
                handle = attach(net, rule, optimizer=optimizer)
                return _Run(method, kit, net, handle, optimizer)
            handle = attach(net, rule)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.config.lr * kit.weight_scale)
        return _Run(method, kit, net, handle, optimizer)

    def run(self, method_name: str, framework: str) -> RunResult:
        """Train and test one (method, framework); failures become a ``"failed"`` result."""
        method, kit = METHODS[method_name], KITS[framework]
        result = RunResult(
            rule=method.name,
            framework=kit.name,
            label=method.label,
            accuracy_definition=method.accuracy,
            framework_version=kit.version(),
        )
        try:
            self._train(method, kit, result)
        except (PlasticityError, RuntimeError, ValueError) as exc:
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        return result

    def _train(self, method: Method, kit: FrameworkKit, result: RunResult) -> None:
        config = self.config
        run = self.build(method, kit)
        generator = torch.Generator().manual_seed(config.seed)
        n_train = len(self.dataset.y_train)
        n_batches = math.ceil(n_train / config.batch_size)
        eval_every = max(1, math.ceil(n_batches / config.evals_per_epoch))
        spent, steps_trained, peak, exact = 0.0, 0, 0.0, True
        bar = _progress(
            config.epochs * n_batches,
            self.progress,
            f"{method.label} / {kit.name}",
        )
        result.curve.append((0.0, self.evaluate(run)[0]))  # nothing learns while evaluating
        try:
            for epoch in range(config.epochs):
                for number, index in enumerate(_batches(n_train, config.batch_size, generator)):
                    x = self._spikes(index, True, generator)
                    y = self.dataset.y_train[index].to(self.device)
                    with PeakMemory(self.device) as meter:
                        run.train_batch(x, y)
                    if epoch or number:  # the first batch pays one-time costs (JIT, CUDA init)
                        spent += meter.seconds
                        steps_trained += len(x)
                    peak, exact = max(peak, meter.peak_mib), exact and meter.exact
                    bar.update(1)
                    if (number + 1) % eval_every == 0 or number + 1 == n_batches:
                        accuracy, details = self.evaluate(run)
                        result.curve.append((epoch + (number + 1) / n_batches, accuracy))
                        bar.set_postfix(accuracy=f"{accuracy:.1f}%")
        finally:
            bar.close()
            if run.handle is not None:
                run.handle.detach()
        result.accuracy = result.curve[-1][1]
        result.details = details
        result.ms_per_step = 1e3 * spent / steps_trained if steps_trained else math.nan
        result.train_seconds = spent
        result.peak_mib, result.memory_exact = peak, exact

    def run_all(self, on_result: Callable[[RunResult], None] | None = None) -> list[RunResult]:
        """Every (framework, method) of the config; ``on_result`` after each."""
        results = []
        for framework in self.config.frameworks:
            for method in self.config.rules:
                result = self.run(method, framework)
                results.append(result)
                if on_result is not None:
                    on_result(result)
        return results


def _percent(predictions: Tensor, labels: Tensor) -> float:
    return 100.0 * float((predictions == labels).double().mean())


class _NoBar:
    def update(self, n: int) -> None:
        del n

    def set_postfix(self, **kwargs: str) -> None:
        del kwargs

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None)
