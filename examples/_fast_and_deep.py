"""Shared code of the Fast & Deep examples: the training driver, options, summary and plots.

``fast_and_deep_yinyang.py`` and ``fast_and_deep_mnist16.py`` hold what is specific to their
data set (loading, encoding, figures); ``benchmarks/fast_and_deep_yinyang.py`` imports them, so
it measures exactly the loop the examples show. The loop itself is
:func:`plasticity_plugins.rules.fast_and_deep.train_epoch` (the reference's: a forward pass,
then either a weight bump or a gradient step per batch).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from plasticity_plugins.rules.fast_and_deep import (
    FastAndDeep,
    FirstSpikeNetwork,
    evaluate,
    train_epoch,
)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Data:
    """Encoded inputs (spike times) and labels of the three splits, on the training device."""

    train: tuple[Tensor, Tensor]
    validation: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]


@dataclass
class Run:
    """A trained network and how it got there.

    Attributes:
        config: the hyper-parameters.
        seed: seed of the initial weights, the shuffling and the noise.
        net: the trained network.
        test_accuracy: accuracy (percent) on the test split after the last epoch.
        test_loss: mean loss on the test split.
        history: per evaluated epoch: epoch, train loss/accuracy, validation accuracy, bumps,
            clipped updates, seconds.
        train_seconds: wall time of the training epochs alone.
        total_seconds: wall time including the evaluations.
        bumps: batches (all epochs) that bumped weights instead of a gradient step.
        clipped: (sample, neuron) weight updates dropped by ``max_dw_norm`` (all epochs).
    """

    config: FastAndDeep
    seed: int
    net: FirstSpikeNetwork
    test_accuracy: float
    test_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    total_seconds: float = 0.0
    bumps: int = 0
    clipped: int = 0


def progress_bar(enabled: bool, **kwargs: Any) -> Callable[[Any], Any]:
    """``wrap(iterable)``: a tqdm bar around it when enabled, else the iterable itself."""
    if not enabled:
        return lambda iterable: iterable
    from tqdm.auto import tqdm

    return functools.partial(tqdm, dynamic_ncols=True, **kwargs)


def train(
    config: FastAndDeep,
    data: Data,
    seed: int = 0,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
    eval_every: int = 5,
    label: str = "",
) -> Run:
    """Train a fresh network of ``config`` on ``data`` and test it (the reference's recipe).

    Adam and StepLR as configured (one scheduler step per epoch), weight bumping and the
    ``max_dw_norm`` guard on, validation accuracy every ``eval_every`` epochs (and after the
    last), test accuracy at the end.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = config.build(device=device, dtype=dtype, generator=generator)
    optimizer, bumping = config.optimizer(net), config.bumping()
    scheduler = config.scheduler(optimizer)
    x_train, y_train = data.train
    n_batches = math.ceil(len(x_train) / config.batch_size)
    epochs = progress_bar(progress, desc=f"{label}epochs")(range(config.epochs))
    batches = progress_bar(progress, total=n_batches, leave=False, desc="batches")
    history: list[dict[str, float]] = []
    train_seconds = 0.0
    bumps = clipped = 0
    for epoch in epochs:
        stats = train_epoch(
            net, optimizer, x_train, y_train, config, bumping, generator, progress=batches
        )
        scheduler.step()
        train_seconds += stats.seconds
        bumps, clipped = bumps + stats.bumps, clipped + stats.clipped
        if (epoch + 1) % eval_every == 0 or epoch + 1 == config.epochs:
            val_accuracy, _, _ = evaluate(net, *data.validation, config)
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": stats.loss,
                    "train_accuracy": stats.accuracy,
                    "validation_accuracy": val_accuracy,
                    "bumps": stats.bumps,
                    "clipped": stats.clipped,
                    "seconds": stats.seconds,
                }
            )
            if hasattr(epochs, "set_postfix"):
                epochs.set_postfix(
                    loss=f"{stats.loss:.3f}",
                    train=f"{stats.accuracy:.1f}%",
                    val=f"{val_accuracy:.1f}%",
                    bumps=stats.bumps,
                )
    test_accuracy, test_loss, _ = evaluate(net, *data.test, config)
    return Run(
        config=config,
        seed=seed,
        net=net,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        history=history,
        train_seconds=train_seconds,
        total_seconds=time.perf_counter() - start,
        bumps=bumps,
        clipped=clipped,
    )


def parser(description: str, config: FastAndDeep, out: str) -> argparse.ArgumentParser:
    """The examples' shared command-line options."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=config.epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    p.add_argument("--eval-every", type=int, default=5, help="validation every N epochs")
    p.add_argument("--out", default=out, help="PNG of the results ('' for none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def train_from_args(config: FastAndDeep, data: Data, args: argparse.Namespace) -> Run:
    """Call :func:`train` with the options of :func:`parser` (seed, device, dtype, progress)."""
    return train(
        config,
        data,
        seed=args.seed,
        device=args.device,
        dtype=DTYPES[args.dtype],
        progress=not args.no_progress,
        eval_every=args.eval_every,
    )


def summary(run: Run, **extra: Any) -> str:
    """One JSON line: test accuracy and loss, last validation accuracy, ``extra``, wall times."""
    return json.dumps(
        {
            "test_accuracy": round(run.test_accuracy, 2),
            "validation_accuracy": round(run.history[-1]["validation_accuracy"], 2),
            "test_loss": round(run.test_loss, 4),
            **extra,
            "train_seconds": round(run.train_seconds, 1),
            "total_seconds": round(run.total_seconds, 1),
        }
    )


# ------------------------------------------------------------------------------- plotting
def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str) -> None:
    """Write ``fig`` to ``path`` (creating its folder) and close it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)


def layer_times(net: FirstSpikeNetwork, times: Tensor) -> tuple[Tensor, Tensor]:
    """Hidden and output spike times of the inputs ``times`` (in chunks of 250, no autograd)."""
    with torch.no_grad():
        chunks = [net.forward_all(chunk) for chunk in times.split(250)]
    hidden, out = (torch.cat(layer) for layer in zip(*chunks, strict=True))
    return hidden, out


def training_curves(
    ax: Any, run: Run, train_label: str, reference: tuple[float, str] | None = None
) -> None:
    """Train and validation accuracy per evaluated epoch on ``ax``.

    ``reference``: ``(accuracy, label)`` of a dashed horizontal line (e.g. a published result).
    """
    epochs = [h["epoch"] for h in run.history]
    ax.plot(epochs, [h["train_accuracy"] for h in run.history], marker=".", label=train_label)
    ax.plot(epochs, [h["validation_accuracy"] for h in run.history], marker=".", label="validation")
    if reference is not None:
        ax.axhline(reference[0], color="0.5", ls="--", lw=0.8, label=reference[1])
    lowest = min(min(h["train_accuracy"], h["validation_accuracy"]) for h in run.history)
    ax.set_ylim(max(0.0, lowest - 2), 100)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy [%]")
    ax.legend(fontsize=7, loc="lower right")


def raster(
    fig: Any,
    spec: Any,
    groups: Sequence[tuple[str, Tensor]],
    colors: Sequence[str] | None = None,
    highlight: int | None = None,
    title: str = "",
) -> list[Any]:
    """Spike-time raster of one sample in the cell ``spec`` of ``fig``: one panel per group.

    ``groups`` are ``(name, times [N])``, drawn top to bottom with a shared time axis. The first
    group (the output) is drawn in neuron order, coloured by ``colors``, the ``highlight``
    neuron (the label) ringed; the neurons of the others are sorted by spike time (silent ones
    left out, counted in the label).
    """
    heights = [2.0 + 0.012 * len(times) for _, times in groups]
    sub = spec.subgridspec(len(groups), 1, height_ratios=heights, hspace=0.08)
    axes: list[Any] = []
    finite = [t.detach().double().cpu() for _, t in groups]
    finite = [t[torch.isfinite(t)] for t in finite]
    hi = max((float(t.max()) for t in finite if len(t)), default=1.0)
    for g, (name, times) in enumerate(groups):
        ax = fig.add_subplot(sub[g], sharex=axes[0] if axes else None)
        axes.append(ax)
        times = times.detach().double().cpu()
        fired = int(torch.isfinite(times).sum())
        if g == 0:
            for n, t in enumerate(times.tolist()):
                color = colors[n] if colors is not None else "k"
                if math.isfinite(t):
                    ax.scatter([t], [n], s=36, color=color, zorder=3)
                    if n == highlight:
                        ax.scatter([t], [n], s=130, facecolors="none", edgecolors="k", zorder=4)
            ax.set_ylim(-0.7, len(times) - 0.3)
            ax.set_yticks(range(len(times)))
            ax.tick_params(axis="y", labelsize=6 if len(times) <= 5 else 5)
        else:
            ordered = torch.sort(times[torch.isfinite(times)]).values
            ax.eventplot(
                [[float(t)] for t in ordered], lineoffsets=range(len(ordered)), colors="0.2"
            )
            ax.set_ylim(-0.7, max(len(ordered), 1) - 0.3)
            ax.set_yticks([])
        if g < len(groups) - 1:
            ax.tick_params(labelbottom=False)
        ax.set_ylabel(f"{name}\n{fired}/{len(times)}", fontsize=7)
    axes[0].set_xlim(0.0, hi * 1.08 + 0.05)
    axes[-1].set_xlabel("time [tau_s]")
    if title:
        axes[0].set_title(title, fontsize=9)
    return axes
