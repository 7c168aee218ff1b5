"""One training run over several processes (``torchrun``, DDP): which rank this process is, and the collective steps
the loop needs. NCCL between GPUs, gloo on a CPU, so every branch runs in CPU tests with two gloo ranks."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in a run: ``rank`` of ``world`` processes (1: a plain run, no process group)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if not (self.world >= 1 and 0 <= self.rank < self.world and self.local_rank >= 0):
            raise ValueError(f"rank {self.rank} of {self.world} processes is not a place in a run")

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and database rows, and decides when the run stops."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Ranks:
        """What ``torchrun`` told this process (RANK, WORLD_SIZE, LOCAL_RANK); a plain run without them."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    def share(self, n: int) -> range:
        """This rank's items of ``n`` (every ``world``-th from ``rank``): the ranks' shares cover each item once."""
        return range(self.rank, n, self.world)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks: validation adds errors and lengths, never averages per-rank ratios."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def decide(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (stop, cancel, the time budget), so all ranks leave a loop together."""
        return bool(self.agree(int(flag)))

    def agree(self, value: int) -> int:
        """Rank 0's ``value`` on every rank (a plan of epochs timed on rank 0)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=_collective_device())
        dist.broadcast(t, src=0)
        return int(t.item())


def _collective_device() -> torch.device:
    """NCCL reduces tensors on the rank's GPU, gloo on the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Joins the run's process group (from torchrun's MASTER_ADDR / MASTER_PORT); nothing for a plain run. Returns the
    rank's device: its own GPU (``cuda:LOCAL_RANK``) when the run is on CUDA."""
    if ranks.world == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world)
    return device


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """The module that trains: ``model`` itself, or DDP around it (gradients averaged over the ranks in backward;
    rank 0's weights broadcast at the start). Checkpoints keep ``model``'s own state dict."""
    if ranks.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def end(ranks: Ranks) -> None:
    """Leaves the process group together (a barrier first: no rank tears down while another still talks to it). The
    run's DDP wrapper sits in reference cycles (its gradient hooks) that hold the group: collected here, while the
    interpreter is alive, not at exit, where gloo's threads then die with "terminate called without an active
    exception" (seen once in CI under load; pytorch/pytorch#179291)."""
    if ranks.world > 1 and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


SINGLE = Ranks()

__all__ = ["Ranks", "SINGLE", "start", "wrap", "end"]
