"""Scale out with PyTorch DistributedDataParallel under ``torchrun``: gloo on CPUs, nccl on GPUs.

Every process (rank) loads the same folder and makes the same seeded split; each trains on its own shard of the
training set, DDP averages the gradients, so all ranks hold the same weights; rank 0 alone writes files.
Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .data import ImageSet
from .freeze import param_groups
from .runtime import get_device

__all__ = ["Context", "barrier", "block_adamw", "close", "init", "shard", "unwrap", "weight_gap", "wrap"]


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank, how many processes there are, and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """True on rank 0, the one process that writes files."""
        return self.rank == 0


def init(device: str | None = None) -> Context:
    """Join the process group that ``torchrun`` set up (nccl on CUDA, else gloo), or stay a single process.

    ``device`` (else ``$FTLIB_DEVICE``, else the CPU) is checked first: a GPU is used only when asked for.
    """
    chosen = get_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(device=chosen)
    if chosen.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        backend, chosen = "nccl", torch.device("cuda", local_rank)
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Context(dist.get_rank(), dist.get_world_size(), chosen)


def shard(data: ImageSet, context: Context) -> ImageSet:
    """This rank's share of ``data``: every ``world_size``-th example from position ``rank`` (disjoint shards)."""
    rows = torch.arange(context.rank, len(data), context.world_size)
    if len(rows) == 0:
        raise ValueError(f"{len(data)} training images cannot be shared among {context.world_size} processes")
    return ImageSet(data.images[rows], data.labels[rows], data.classes, data.name)


def wrap(model: nn.Module, context: Context) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several processes, else ``model`` itself."""
    if context.world_size == 1:
        return model
    model.to(context.device)
    ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def block_adamw(model: nn.Module, lr: float | dict[str, float],
                weight_decay: float = 0.01) -> Callable[[list[dict]], torch.optim.Optimizer]:
    """An ``optimizer`` for :func:`ftlib.train.fit` with per-block rates read from the *unwrapped* model: AdamW with
    ``weight_decay`` (PyTorch's default, 0.01, unless given).

    A DDP wrapper has one child, ``module``, so ``fit``'s own per-block groups cannot see the blocks; this
    callable ignores the groups ``fit`` offers and builds them from ``unwrap(model)`` instead.
    """
    groups = param_groups(unwrap(model), lr)
    return lambda _offered: torch.optim.AdamW(groups, weight_decay=weight_decay)


def weight_gap(model: nn.Module, context: Context) -> float:
    """The largest difference between any rank's weights (parameters and buffers) and rank 0's: 0.0 when DDP
    averaged the gradients and kept every process in step (always 0.0 in a single process)."""
    if context.world_size == 1:
        return 0.0
    values = [v.detach().flatten().float() for v in unwrap(model).state_dict().values() if v.is_floating_point()]
    flat = torch.cat(values).to(context.device)
    reference = flat.clone()
    dist.broadcast(reference, 0)
    gap = (flat - reference).abs().max().reshape(1)
    dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    return float(gap)


def barrier(context: Context) -> None:
    """Wait until every process gets here (nothing to wait for in a single process)."""
    if context.world_size > 1:
        dist.barrier()


def close(context: Context) -> None:
    """Leave the process group (after a last barrier)."""
    if context.world_size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
