"""One training run over several processes (``torchrun``, DDP): which rank this process is, and the collective steps
the loop needs. NCCL between GPUs, gloo on a CPU, so every branch runs in CPU tests with two gloo ranks."""

from __future__ import annotations

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
        if self.world == 1:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
        dist.broadcast(t, src=0)
        return bool(t.item())


def _collective_device() -> torch.device:
    """NCCL reduces tensors on the rank's GPU, gloo on the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def start(ranks: Ranks, device: torch.device) -> None:
    """Joins the run's process group (from torchrun's MASTER_ADDR / MASTER_PORT); nothing for a plain run."""
    if ranks.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world)


def end(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


SINGLE = Ranks()

__all__ = ["Ranks", "SINGLE", "start", "end"]
