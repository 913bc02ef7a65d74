"""DistributedDataParallel (gloo, 2 CPU processes): STDP grads equal the whole-batch run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_worker import make_problem

import plasticity_plugins
from plasticity_plugins.rules import STDP

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(mode: str, tmp_path: Path) -> list[torch.Tensor]:
    port = str(free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = [tmp_path / f"{mode}-{rank}.pt" for rank in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(rank), "2", port, mode, str(outs[rank])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(2)
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, output.decode()[-3000:]
    return [torch.load(out) for out in outs]


def whole_batch_grad() -> torch.Tensor:
    net, inputs = make_problem()
    handle = plasticity_plugins.attach(net, STDP(a_plus=0.01, a_minus=0.01))
    with torch.no_grad():
        for x_t in inputs:
            net(x_t)
    handle.detach()
    return net[0].weight.grad


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_ddp_grads_equal_single_process_whole_batch(tmp_path):
    expected = whole_batch_grad()
    assert expected.abs().sum() > 0
    for grad in run_ranks("attach", tmp_path):
        torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-7)
    # The contrast: a plain forward-hook rule leaves each rank with its own local update.
    plain = run_ranks("plain-hook", tmp_path)
    assert not torch.allclose(plain[0], plain[1])
    torch.testing.assert_close((plain[0] + plain[1]) / 2, expected, rtol=1e-6, atol=1e-7)
