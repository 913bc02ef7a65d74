"""Fast & Deep on Yin-Yang: exact first-spike-time learning, the reference's recipe.

Göltz, Kriener et al., Nat. Mach. Intell. 2021. Every sample ``(x, y, 1 - x, 1 - y)`` becomes
four input spikes at ``t = 0.15 + 1.85 v`` plus a bias spike at 0.9; 120 hidden neurons (+ a
bias spike at 0.9) feed 3 output neurons, and the class is the output neuron that fires first.
Training: the Fast & Deep loss (softmax over negative output times, xi = 0.2, plus
``0.005 exp(t_label)``), Adam 5e-3, StepLR(20, 0.95), batch 150, 300 epochs; initial weights
N(1.5, 0.8) (hidden) and N(0.5, 0.8) (output); weight bumping while more than 30 % of the hidden
or any output spikes are missing; updates of grazing spikes (``|dL/dw| > 0.2``) dropped.
Published test accuracy: 95.9 +- 0.7 %.

Run (``--help`` for the options)::

    python examples/fast_and_deep_yinyang.py [--epochs 300] [--seed 0] [--device cpu]

It prints the test accuracy and writes a figure (default ``runs/fast_and_deep_yinyang.png``):
the test points coloured by predicted class over the learned decision regions (misclassified
points crossed), the training curves, the output spike times per class, and spike-time rasters
(inputs, hidden, output) of one test sample per class.
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

from plasticity_plugins.data.yinyang import CLASS_NAMES, load_yinyang
from plasticity_plugins.rules.fast_and_deep import FastAndDeep, predict

COLORS = ("tab:blue", "tab:orange", "tab:green")


def load_data(config: FastAndDeep, device: str = "cpu", dtype: torch.dtype = torch.float64) -> Data:
    """The published splits (train 5000, validation 1000, test 1000), encoded as spike times."""

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        values, labels = load_yinyang(name, dtype=torch.float64)
        return config.encode(values).to(device, dtype), labels.to(device)

    return Data(split("train"), split("validation"), split("test"))


def plot(run: Run, data: Data, path: str) -> None:
    """The figure described in the module docstring."""
    from matplotlib.colors import ListedColormap, to_rgba

    net, config = run.net, run.config
    dtype = net.layers[0].weight.dtype
    device = net.layers[0].weight.device
    times, labels = data.test
    hidden, out = layer_times(net, times)
    predicted = predict(out).cpu()
    labels = labels.cpu()
    values = (times.cpu().double() - config.early) / (config.late - config.early)
    x, y = values[:, 0].numpy(), values[:, 1].numpy()

    fig = pyplot().figure(figsize=(15, 9.5))
    spec = fig.add_gridspec(2, 3, height_ratios=(1.0, 1.15), hspace=0.3, wspace=0.42)

    # (a) decision regions on a grid over the disc, test points by predicted class
    ax = fig.add_subplot(spec[0, 0])
    n = 160
    grid = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    points = torch.stack([gx.ravel(), gy.ravel(), 1 - gx.ravel(), 1 - gy.ravel()], dim=1)
    with torch.no_grad():
        encoded = config.encode(points).to(device, dtype)
        region = torch.cat([predict(net(chunk)) for chunk in encoded.split(250)]).cpu().double()
    inside = ((gx - 0.5) ** 2 + (gy - 0.5) ** 2).ravel() <= 0.25
    region[~inside] = float("nan")
    region[region < 0] = float("nan")
    ax.imshow(
        region.reshape(n, n).numpy(),
        origin="lower",
        extent=(0, 1, 0, 1),
        cmap=ListedColormap([to_rgba(c, 0.25) for c in COLORS]),
        vmin=-0.5,
        vmax=2.5,
        interpolation="nearest",
    )
    for c, name in enumerate(CLASS_NAMES):
        mask = (predicted == c).numpy()
        ax.scatter(x[mask], y[mask], s=7, color=COLORS[c], label=f"predicted {name}")
    wrong = (predicted != labels).numpy()
    ax.scatter(x[wrong], y[wrong], s=40, marker="x", color="k", lw=1.2, label="misclassified")
    ax.set_aspect("equal")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(
        f"test set: {run.test_accuracy:.1f} % correct ({int(wrong.sum())} wrong); "
        "shading: decision regions",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="lower left", framealpha=0.9)

    # (b) training curves
    ax = fig.add_subplot(spec[0, 1])
    training_curves(ax, run, "train (during epoch)", reference=(95.9, "published test 95.9 %"))
    twin = ax.twinx()
    twin.plot(
        [h["epoch"] for h in run.history], [h["bumps"] for h in run.history], color="0.6", lw=0.6
    )
    twin.set_ylabel("weight-bump batches per epoch (grey)", fontsize=7, color="0.4")
    ax.set_title(f"seed {run.seed}, {config.epochs} epochs, {run.train_seconds:.0f} s", fontsize=9)

    # (c) output spike times per true class
    ax = fig.add_subplot(spec[0, 2])
    out_cpu = out.cpu().double()
    for c in range(3):
        rows = out_cpu[labels == c]
        for k in range(3):
            t = rows[:, k]
            t = t[torch.isfinite(t)]
            jitter = (torch.rand(len(t)) - 0.5) * 0.2
            ax.scatter((c + (k - 1) * 0.27 + jitter * 0.5).numpy(), t.numpy(), s=2, color=COLORS[k])
    for k, name in enumerate(CLASS_NAMES):
        ax.scatter([], [], s=12, color=COLORS[k], label=f"neuron '{name}'")
    ax.set_xticks(range(3))
    ax.set_xticklabels([f"true {name}" for name in CLASS_NAMES])
    ax.set_ylabel("output spike time [tau_s]")
    ax.set_title("output spike times of the test samples", fontsize=9)
    ax.legend(fontsize=7)

    # (d) rasters: the first correctly classified test sample of each class
    for c in range(3):
        hits = ((labels == c) & (predicted == c)).nonzero()
        index = int(hits[0]) if len(hits) else int((labels == c).nonzero()[0])
        inputs = torch.cat([times[index].cpu(), torch.tensor([config.bias_times[0] or 0.0])])
        raster(
            fig,
            spec[1, c],
            [
                ("output", out[index]),
                ("hidden", hidden[index]),
                ("input+bias", inputs.to(dtype)),
            ],
            colors=COLORS,
            highlight=c,
            title=f"test sample {index}: true {CLASS_NAMES[c]}, "
            f"predicted {CLASS_NAMES[int(predicted[index])] if predicted[index] >= 0 else '-'}",
        )
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> Run:
    """Parse the options, train, print the test accuracy and write the figure."""
    config = FastAndDeep.published("yinyang")
    args = parser(__doc__.splitlines()[0], config, "runs/fast_and_deep_yinyang.png").parse_args(
        argv
    )
    config = FastAndDeep.published("yinyang", epochs=args.epochs)
    torch.set_num_threads(args.threads)
    data = load_data(config, args.device, DTYPES[args.dtype])
    print(
        f"Fast & Deep, Yin-Yang: 4(+1)-120(+1)-3, {config.epochs} epochs, batch "
        f"{config.batch_size}, seed {args.seed}, {args.dtype} on {args.device}"
    )
    run = train_from_args(config, data, args)
    print(summary(run))
    print(f"test accuracy: {run.test_accuracy:.2f} % (published: 95.9 +- 0.7 %)")
    if args.out:
        plot(run, data, args.out)
        print(f"figure: {args.out}")
    return run


if __name__ == "__main__":
    main()
