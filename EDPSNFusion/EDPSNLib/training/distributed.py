"""Multi-process data-parallel training (``torchrun``): process group, DDP, rank-sliced batches.

A run started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) trains one
:class:`~torch.nn.parallel.DistributedDataParallel` replica per process: gloo on CPU, NCCL on
CUDA (``cuda:LOCAL_RANK``). ``batch_size`` stays the *global* batch: every rank takes
``batch[rank::world_size]`` of each global batch of :func:`EDPSNLib.training.datasets.epoch_batches`,
the slice ``torch.utils.data.DistributedSampler`` would give it of the same seeded
permutation. Slicing our own keys instead of using the sampler keeps the per-item
augmentation seeds and lets a resumed run start at any step, with any number of processes.
Every function here is a no-op (or the identity) in a single-process run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from EDPSNLib.errors import InputError

T = TypeVar("T")
_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run; ``device`` carries the collectives (cpu for gloo)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # the process group was made here and is destroyed at the end

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part (world_size > 1)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and reports progress."""
        return self.rank == 0


def env_ranks() -> tuple[int, int, int]:
    """(world_size, rank, local_rank) from the torchrun environment; (1, 0, 0) outside it."""
    values = []
    for name, default in zip(_ENV, ("1", "0", "0")):
        text = os.environ.get(name, default)
        try:
            values.append(int(text))
        except ValueError:
            raise InputError(f"Environment variable {name}={text!r} is not an integer.") from None
    world, rank, local = values
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InputError(f"Inconsistent torchrun environment WORLD_SIZE={world}, RANK={rank}.")
    return world, rank, local


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun job (usable before :func:`setup`)."""
    return os.environ.get("RANK", "0") == "0"


def setup(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group if there is one; returns the context and this rank's device.

    CUDA ranks use NCCL on ``cuda:LOCAL_RANK`` (an explicit ``cuda:N`` is overridden, as each
    process must own one GPU); CPU ranks use gloo. A group made elsewhere is reused.
    """
    world, rank, local = env_ranks()
    if world == 1:
        return DistContext(), device
    import torch.distributed as dist

    if not dist.is_available():
        raise InputError("This PyTorch build has no torch.distributed; train with one process.")
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise InputError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) visible; "
                "start at most one process per GPU (torchrun --nproc_per_node)."
            )
        device, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(device)
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise InputError(
            f"Multi-process training runs on cuda or cpu, not {device.type}; use --device cpu."
        )
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend)
    return DistContext(world, rank, local, device, owns), device


def shutdown(ctx: DistContext, finished: bool = True) -> None:
    """Leave the process group made by :func:`setup` (no-op otherwise).

    After a run that ``finished`` (no error on this rank), every rank meets at a barrier
    first: a rank whose gloo peer has already torn the group down can abort at exit
    ("terminate called without an active exception"). After an error there is no barrier,
    since the other ranks may never arrive.
    """
    if ctx.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            if finished and ctx.distributed:
                with contextlib.suppress(RuntimeError):
                    dist.barrier()
            dist.destroy_process_group()


def any_rank(ctx: DistContext, flags: Sequence[bool]) -> list[bool]:
    """Element-wise OR of boolean flags over all ranks (one all-reduce)."""
    if not ctx.distributed:
        return [bool(f) for f in flags]
    import torch.distributed as dist

    t = torch.tensor([float(f) for f in flags], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def mean_over_ranks(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (the same on every rank)."""
    if not ctx.distributed:
        return values
    import torch.distributed as dist

    out = values.detach().to(ctx.device, copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / ctx.world_size


def check_global_batch(batch_size: int, n_items: int, ctx: DistContext) -> None:
    """The global batch (``min(batch_size, n_items)``) must split evenly over the ranks."""
    size = min(batch_size, n_items)
    if ctx.distributed and size % ctx.world_size:
        shown = f"{size} (the data set has only {n_items} pairs)" if size < batch_size else size
        raise InputError(
            f"The global batch size {shown} is not divisible by the {ctx.world_size} processes; "
            f"use a --batch-size that is a multiple of {ctx.world_size} (each process takes "
            "batch_size / processes items of every batch)."
        )


def rank_share(batches: Sequence[Sequence[T]], ctx: DistContext) -> list[list[T]]:
    """This rank's part of each global batch: ``batch[rank::world_size]`` (DistributedSampler's)."""
    return [list(b[ctx.rank :: ctx.world_size]) for b in batches]


def wrap_ddp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """``module`` in DistributedDataParallel (gradients averaged over ranks), or as it is."""
    if not ctx.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, output_device=ids[0] if ids else None)


class TrainForward(nn.Module):
    """The training forward pass as ``forward`` (DDP synchronises gradients through forward only)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mri: torch.Tensor, func: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) MRI, (B, 1 or 3, H, W) functional on [0, 1] -> fused luma (B, 1, H, W)."""
        func_y, _cbcr = self.model.preprocess_functional(func)
        return self.model.fuse_luma(mri, func_y)["fused"]
