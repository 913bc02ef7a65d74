"""DistributedDataParallel (gloo, 2 CPU processes): STDP grads equal the whole-batch run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_worker import make_problem, stllr_loss

import plasticity_plugins
from plasticity_plugins.rules import STDP, STLLR

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


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_ddp_stllr_grads_equal_single_process_whole_batch(tmp_path):
    net, inputs = make_problem()
    handle = plasticity_plugins.attach(net, STLLR.published("cli"))
    for x_t in inputs:
        handle.backward(stllr_loss(net(x_t), 0))
    handle.detach()
    expected = net[0].weight.grad
    assert expected.abs().sum() > 0
    for grad in run_ranks("stllr", tmp_path):
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def test_ddp_broadcasting_neuron_state_buffers_is_refused(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from plasticity_plugins import AttachError

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        net, inputs = make_problem()
        net(inputs[0])  # snnTorch creates its membrane buffer on the first call
        with pytest.raises(AttachError, match="broadcast_buffers=False"):
            plasticity_plugins.attach(DistributedDataParallel(net), STLLR())
        plasticity_plugins.attach(
            DistributedDataParallel(net, broadcast_buffers=False), STLLR()
        ).detach()
    finally:
        dist.destroy_process_group()
