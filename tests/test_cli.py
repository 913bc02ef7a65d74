"""The command line: the STDP demo's table and its errors."""

from __future__ import annotations

import re
import subprocess
import sys

from plasticity_plugins.cli import main

SMALL = ["--neurons", "12", "--steps", "15", "--batches", "2", "--batch-size", "4"]


def test_stdp_demo_prints_one_row_per_framework_and_they_agree(capsys):
    assert main(["stdp-demo", *SMALL, "--weight-mean", "0.05"]) == 0
    out = capsys.readouterr().out
    rows = [
        line for line in out.splitlines() if re.match(r"\s*(snntorch|spikingjelly|norse) \|", line)
    ]
    assert [r.split("|")[0].strip() for r in rows] == ["snntorch", "spikingjelly", "norse"]
    for row in rows:
        cells = [c.strip() for c in row.split("|")]
        assert float(cells[3]) > 0  # the weights changed
        assert float(cells[4]) > 0  # there were spikes
        assert float(cells[5]) < 1e-5  # the same weights in every framework


def test_unknown_framework_is_an_error(capsys):
    assert main(["stdp-demo", "--frameworks", "brian2", *SMALL]) == 2
    assert "snntorch, spikingjelly, norse" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "plasticity_plugins", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "stdp-demo" in result.stdout
