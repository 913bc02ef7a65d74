"""One rank of the DDP test (tests/test_ddp.py): STDP on this rank's half of the batch.

Usage: python ddp_worker.py RANK WORLD PORT MODE OUT   (MODE: "attach", "plain-hook" or "stllr")
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

STEPS, BATCH, N_IN, N_OUT = 12, 4, 6, 5


def make_problem() -> tuple[nn.Sequential, torch.Tensor]:
    import snntorch as snn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(N_IN, N_OUT, bias=False), snn.Leaky(beta=0.8, init_hidden=True))
    with torch.no_grad():
        net[0].weight.uniform_(0, 0.8)
    inputs = (torch.rand(STEPS, BATCH, N_IN) < 0.4).float()
    return net, inputs


def stllr_loss(out: torch.Tensor, first_sample: int) -> torch.Tensor:
    """A per-sample loss averaged over the WHOLE batch, so rank losses add up to the global one."""
    weights = torch.linspace(-1.0, 1.0, BATCH * N_OUT).reshape(BATCH, N_OUT)
    rows = weights[first_sample : first_sample + out.shape[0]]
    return (out * rows).sum() / BATCH * dist_world()


def dist_world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def plain_hook_stdp(net: nn.Sequential) -> None:
    """What a naive forward-hook rule does: writes its local update into .grad, nothing else."""
    from plasticity_plugins.kernels.stdp import pair_stdp_accumulate_
    from plasticity_plugins.kernels.traces import decay_factor

    traces: dict[str, torch.Tensor] = {}

    def on_neuron(module, args, out):
        x = traces.pop("x")
        grad = net[0].weight.grad
        if grad is None:
            grad = net[0].weight.grad = torch.zeros_like(net[0].weight)
        pre_tr = traces.get("pre", torch.zeros_like(x))
        post_tr = traces.get("post", torch.zeros_like(out))
        traces["pre"], traces["post"] = pair_stdp_accumulate_(
            grad,
            x[None],
            out[None],
            pre_tr,
            post_tr,
            a_plus=0.01,
            a_minus=0.01,
            pre_decay=decay_factor(20),
            post_decay=decay_factor(20),
            alpha=-1 / x.shape[0],
        )

    net[0].register_forward_pre_hook(lambda m, a: traces.__setitem__("x", a[0]))
    net[1].register_forward_hook(on_neuron)


def main() -> None:
    rank, world, port, mode, out = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
        sys.argv[5],
    )
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}"
    )
    import plasticity_plugins
    from plasticity_plugins.rules import STDP, STLLR

    net, inputs = make_problem()
    share = BATCH // world
    local = inputs[:, rank * share : (rank + 1) * share]
    # snnTorch keeps the membrane in a buffer: broadcasting buffers would overwrite rank 1's.
    model = DistributedDataParallel(net, broadcast_buffers=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    if mode == "stllr":
        handle = plasticity_plugins.attach(model, STLLR.published("cli"), optimizer=optimizer)
        for x_t in local:
            handle.backward(stllr_loss(model(x_t), rank * share))
    else:
        if mode == "attach":
            plasticity_plugins.attach(model, STDP(a_plus=0.01, a_minus=0.01), optimizer=optimizer)
        else:
            plain_hook_stdp(net)
        with torch.no_grad():
            for x_t in local:
                model(x_t)
    optimizer.step()  # lr = 0: weights stay, the pre-step hook averages the updates
    torch.save(net[0].weight.grad, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
