"""The swap-BPTT examples run end to end (tiny settings) and print the three methods' rows."""

from __future__ import annotations

import argparse
import json
import re
import sys

import pytest
from script_runner import ROOT, import_script
from script_runner import run_script as run

TINY = [
    "--epochs", "1", "--train-size", "100", "--test-size", "50", "--steps", "4",
    "--batch-size", "50", "--hidden", "32", "--no-progress",
]  # fmt: skip
ROW = r"^{}\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)"


@pytest.mark.parametrize("framework", ["snntorch", "spikingjelly", "norse"])
def test_example_runs_and_prints_the_three_methods(framework):
    pytest.importorskip(framework)
    pytest.importorskip("mlxtend")
    out = run(f"examples/swap_bptt_{framework}.py", *TINY)
    assert f"{framework}: 784-32-10, T=4" in out
    for label in ("BPTT", "S-TLLR", "DECOLLE"):
        match = re.search(ROW.format(re.escape(label)), out, flags=re.MULTILINE)
        assert match, f"no {label} row in:\n{out}"
        accuracy, seconds, peak = map(float, match.groups())
        assert 0.0 <= accuracy <= 100.0 and seconds > 0.0 and peak >= 0.0
    assert re.search(r"per layer \(readout vote\): output spikes: [\d.]+, 0->1: [\d.]+", out)


def test_examples_share_one_training_driver():
    """The loops are shown per framework; data, timing and the driver exist once."""
    common = (ROOT / "examples" / "_common.py").read_text()
    assert "def run_method(" in common and "PeakMemory" in common
    for framework in ("snntorch", "spikingjelly", "norse"):
        source = (ROOT / "examples" / f"swap_bptt_{framework}.py").read_text()
        for function in ("train_bptt", "train_stllr", "train_decolle", "spike_counts"):
            assert f"def {function}(" in source
        assert "poisson_rate" not in source and "PeakMemory" not in source


def test_online_memory_workers_and_report(capsys):
    pytest.importorskip("snntorch")
    pytest.importorskip("mlxtend")
    bench = import_script("benchmarks", "online_memory")
    bench.time_worker("snntorch", ["bptt", "stllr", "decolle"], 3, 1)
    timing = json.loads(capsys.readouterr().out.split("RESULT ", 1)[1])
    rows = {}
    for method in ("bptt", "stllr", "decolle"):
        bench.memory_worker("snntorch", method, 3)
        row = json.loads(capsys.readouterr().out.split("RESULT ", 1)[1])
        assert row["peak_mib"] >= 0.0 and row["exact"] in (True, False)
        rows[(method, 3)] = {**row, "seconds": min(timing["seconds"][method])}
    bench.report("snntorch", rows, [3])
    out = capsys.readouterr().out
    for label in ("BPTT", "S-TLLR", "DECOLLE"):
        assert re.search(rf"^{label}\s+[\d.]+ MiB\s+\d+ ms", out, flags=re.MULTILINE), out
    assert "time vs BPTT" in out


def test_local_accuracy_is_incremental_and_resumable(tmp_path, capsys):
    pytest.importorskip("snntorch")
    pytest.importorskip("mlxtend")
    bench = import_script("benchmarks", "local_accuracy")
    args = argparse.Namespace(
        frameworks=["snntorch"], methods=["bptt", "decolle"], seeds=[0], epochs=1, steps=3,
        train_size=100, test_size=50, out=tmp_path / "acc.json",
    )  # fmt: skip
    bench.run_all(args)
    assert "0 of 2 runs already" in capsys.readouterr().out
    stored = json.loads(args.out.read_text())
    assert set(stored) == {"snntorch/bptt/seed0", "snntorch/decolle/seed0"}
    assert "0->1" in stored["snntorch/decolle/seed0"]["layer_accuracy"]
    bench.run_all(args)
    assert "2 of 2 runs already" in capsys.readouterr().out
    bench.report(args.out, ["snntorch"], ["bptt", "decolle"])
    assert re.search(r"^snntorch\s+DECOLLE\s+1\s+[\d.]+", capsys.readouterr().out, re.MULTILINE)


def test_online_floor_benchmark_smoke(monkeypatch, capsys):
    """The hand-written reference loops run and are reported against BPTT."""
    pytest.importorskip("snntorch")
    bench = import_script("benchmarks", "online_floor")
    monkeypatch.setattr(sys, "argv", ["online_floor.py", "--steps", "3", "--rounds", "1"])
    bench.main()
    out = capsys.readouterr().out
    for label in ("bptt", "detach every step", "minimal DECOLLE", "forward only"):
        assert re.search(rf"^  {label}\s+\d+ ms/iter\s+[\d.]+x BPTT$", out, re.MULTILINE), out
