"""Multi-process training under ``torchrun``: process group, DDP, data split, averaging."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistributedContext:
    """Where this process runs: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process logs, checkpoints and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """True unless ``torchrun`` started this process with a rank other than 0."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed() -> DistributedContext:
    """Join the process group that ``torchrun`` describes in RANK/WORLD_SIZE/LOCAL_RANK.

    Without those variables this is a single process on CUDA if available, else CPU.
    NCCL joins GPU processes, gloo CPU ones.
    """
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, device)


def shutdown_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, context: DistributedContext) -> torch.nn.Module:
    """DistributedDataParallel over ``model`` when several processes train it."""
    if not context.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


class ResumableSampler(DistributedSampler):
    """This rank's share of a (seed, epoch)-shuffled order, optionally from part-way.

    ``skip`` drops the first indices of the epoch so that a resumed run sees
    exactly the examples an uninterrupted one would have seen next.
    """

    def __init__(self, dataset: Dataset, context: DistributedContext, seed: int, epoch: int):
        super().__init__(
            dataset,
            num_replicas=context.world_size,
            rank=context.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,  # equal shares, so every rank runs the same number of steps
        )
        self.set_epoch(epoch)
        self.skip = 0

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return max(self.num_samples - self.skip, 0)


def average_across_ranks(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Mean of ``values`` over all processes (identity for one process)."""
    if not context.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / context.world_size


def max_across_ranks(value: int, context: DistributedContext) -> int:
    """The largest ``value`` of all processes, e.g. so that all stop at the same step."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())
