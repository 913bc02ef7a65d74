"""What the comparison writes: ``results.json``, ``results.csv``, a table and PNG figures.

* ``results.json``: ``{"config": ..., "dataset": ..., "environment": ..., "results": [...]}``,
  one object per (rule, framework) with accuracy, ms per step, peak memory, the learning curve
  and how the accuracy is defined;
* ``results.csv``: the same rows without the curves;
* ``learning_curves.png``: test accuracy over the epochs, one panel per rule, a line per
  framework;
* ``summary.png``: bars of accuracy, ms per time step and peak memory per rule and framework.
"""

from __future__ import annotations

import csv
import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .runner import CompareConfig, RunResult

COLUMNS = (
    "rule",
    "framework",
    "status",
    "accuracy",
    "ms_per_step",
    "peak_mib",
    "train_seconds",
    "framework_version",
    "accuracy_definition",
    "error",
)


def environment() -> dict[str, Any]:
    """Versions and machine facts stored with the results."""
    from .. import __version__

    return {
        "plasticity_plugins": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def write_results(
    results: Sequence[RunResult], config: CompareConfig, dataset: str, out_dir: Path
) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.csv`` into ``out_dir`` (atomically replaced)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "dataset": dataset,
        "environment": environment(),
        "memory": "peak memory of a training step above the memory on entry (max over the run): "
        "resident memory (VmHWM) on the CPU, torch.cuda.max_memory_allocated on CUDA",
        "time": "training steps only (encoding and evaluation excluded) / time steps trained",
        "results": [_finite(r.row()) for r in results],
    }
    json_path, csv_path = out_dir / "results.json", out_dir / "results.csv"
    _replace(json_path, json.dumps(payload, indent=2))
    partial = csv_path.with_suffix(".csv.partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for result in results:
            writer.writerow({k: _cell(v) for k, v in result.row().items()})
    partial.replace(csv_path)
    return json_path, csv_path


def _replace(path: Path, text: str) -> None:
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """NaN becomes None (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return value


def table_rows(results: Sequence[RunResult]) -> list[list[str]]:
    """Rows of the terminal table, with time and memory relative to BPTT's in the framework."""
    bptt = {r.framework: r for r in results if r.rule == "bptt" and r.status == "ok"}
    rows = []
    for r in results:
        if r.status != "ok":
            rows.append([r.label or r.rule, r.framework, "failed", "", "", "", "", r.error[:60]])
            continue
        base = bptt.get(r.framework)
        time_ratio = mem_ratio = "-"
        if base is not None and r is not base:
            time_ratio = f"{r.ms_per_step / base.ms_per_step:.2f}x"
            if base.peak_mib > 0:
                mem_ratio = f"{r.peak_mib / base.peak_mib:.2f}x"
        rows.append(
            [
                r.label,
                r.framework,
                f"{r.accuracy:.2f}",
                f"{r.ms_per_step:.3f}",
                f"{r.peak_mib:.1f}",
                time_ratio,
                mem_ratio,
                "probe" if "probe" in r.accuracy_definition else "",
            ]
        )
    return rows


HEADER = ["rule", "framework", "test acc %", "ms/step", "peak MiB", "time/BPTT", "mem/BPTT", ""]


def print_table(results: Sequence[RunResult], title: str) -> None:
    """The table in the terminal (rich when installed, plain text otherwise)."""
    rows = table_rows(results)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(HEADER)]
        for row in [HEADER, *rows]:
            print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        return
    table = Table(title=title)
    for i, name in enumerate(HEADER):
        table.add_column(name, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))  # logs: don't squeeze the columns
    console.print(table)


def plot(results: Sequence[RunResult], out_dir: Path, title: str) -> list[Path]:
    """``learning_curves.png`` and ``summary.png`` in ``out_dir`` (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if r.status == "ok"]
    if not done:
        return []
    rules = list(dict.fromkeys(r.rule for r in done))
    frameworks = list(dict.fromkeys(r.framework for r in done))
    colours = {f: plt.get_cmap("tab10")(i) for i, f in enumerate(frameworks)}
    labels = {r.rule: r.label for r in done}
    paths = []

    fig, axes = plt.subplots(
        1, len(rules), figsize=(3.2 * len(rules), 3.0), sharey=True, squeeze=False
    )
    for ax, rule in zip(axes[0], rules, strict=True):
        for r in done:
            if r.rule == rule and r.curve:
                epochs, accuracy = zip(*r.curve, strict=True)
                ax.plot(epochs, accuracy, "o-", color=colours[r.framework], label=r.framework)
        ax.set_title(labels[rule])
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / "learning_curves.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    width = 0.8 / len(frameworks)
    for ax, (key, ylabel) in zip(
        axes,
        [
            ("accuracy", "test accuracy (%)"),
            ("ms_per_step", "ms per time step"),
            ("peak_mib", "peak memory (MiB)"),
        ],
        strict=True,
    ):
        for j, framework in enumerate(frameworks):
            values = [
                next(
                    (getattr(r, key) for r in done if r.rule == rule and r.framework == framework),
                    math.nan,
                )
                for rule in rules
            ]
            positions = [i + (j - (len(frameworks) - 1) / 2) * width for i in range(len(rules))]
            ax.bar(positions, values, width, color=colours[framework], label=framework)
        ax.set_xticks(range(len(rules)), [labels[rule] for rule in rules], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    finite = [r.accuracy for r in done if math.isfinite(r.accuracy)]
    if finite:  # the differences between methods, not the distance from 0, are of interest
        axes[0].set_ylim(max(0.0, min(finite) - 10.0), min(100.0, max(finite) + 3.0))
    fig.legend(
        *axes[0].get_legend_handles_labels(), loc="upper right", ncol=len(frameworks), fontsize=8
    )
    fig.suptitle(title, fontsize=9, x=0.02, ha="left")
    fig.tight_layout()
    paths.append(out_dir / "summary.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
