"""More than one process: torch.distributed under ``torchrun``.

``torchrun --standalone --nproc_per_node 2 -m swapbench run RECIPE`` starts two processes that
train one model together (gloo on the CPU, nccl on CUDA, one GPU per process). Each process reads
its own share of every batch (``SeededInfiniteSampler`` with its rank), computes gradients on it,
and before every optimiser step the gradients are averaged over all processes, so all processes
take the same step. Only rank 0 opens the MLflow run, logs, writes checkpoints and scores; logged
losses are averaged over the processes.

What differs from one process on the whole batch: swaps pair images within each process's share,
and the step's random numbers (co-occurrence crop positions, noise inputs) come from one seeded
generator that every process advances alike, so they repeat across processes while the images
differ. That keeps every process's state identical (and resumable from rank 0's checkpoint), but
it would make GAN families that draw their fakes from noise repeat them on every process, so only
``swap_ae`` recipes train in several processes for now.

Gradients are averaged by a hook on each optimiser's ``step`` rather than by wrapping the networks
in ``DistributedDataParallel``: a GAN step runs several backward passes through networks whose
``requires_grad`` is switched on and off, and lazy regularisers touch the discriminators only every
few steps, which DDP's bucketed reducer does not allow. Averaging all of an optimiser's gradients
in one flat all-reduce just before it steps is exact for any such schedule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from swapbench.errors import UserError


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> Processes:
    """The process layout ``torchrun`` exports (RANK, WORLD_SIZE, LOCAL_RANK); one process without it."""
    try:
        return Processes(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                         int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them); unset them "
                        "to run one process") from None


def start(device: torch.device) -> tuple[Processes, torch.device]:
    """Join the process group when started by torchrun (a no-op for one process); returns the
    layout and this process's device (``cuda:LOCAL_RANK`` on CUDA)."""
    procs = from_environment()
    if procs.world_size == 1:
        return procs, device
    if device.type == "cuda":
        if torch.cuda.device_count() < procs.local_rank + 1:
            raise UserError(f"process {procs.rank} wants GPU {procs.local_rank} but torch sees "
                            f"{torch.cuda.device_count()}; start at most one process per GPU")
        device = torch.device("cuda", procs.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return procs, device


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_parameters(modules: list[torch.nn.Module]) -> None:
    """Every process starts from rank 0's weights and buffers (they are seeded alike anyway)."""
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(optimizer: torch.optim.Optimizer, *args, **kwargs) -> None:
    """Optimiser step pre-hook: replace each gradient by its mean over all processes (one flat
    all-reduce per step). Every process runs the same code, so the same parameters have gradients."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each value averaged over the processes (every process passes the same keys)."""
    if not active() or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], device=device, dtype=torch.float64)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist()))


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process when ``flag`` is true on any (so all stop at the same step)."""
    if not active():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
