"""Weight averaging: the model a run validates, saves and reads is an exponential moving average (EMA) of its weights.

Why: the weights after each step scatter around the valley the schedule descends; their running average sits nearer
its floor and reads more evenly, at the cost of one copy of the weights and one ``lerp`` a step (no extra training).
torch's ``AveragedModel`` does the bookkeeping. The decay warms up, ``min(decay, (1 + n) / (10 + n))`` after ``n``
updates (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``), so a short run's average is not held back by
its random start. Batch-norm statistics are averaged with the weights.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

WARMUP = 10  # the decay after n updates is at most (1 + n) / (WARMUP + n)


def decay_after(updates: int, decay: float) -> float:
    """The share of the average kept at the next update."""
    return min(decay, (1 + updates) / (WARMUP + updates))


def averaged(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An EMA of ``model``'s weights and buffers, or None when ``decay`` is 0 (no averaging)."""
    if not decay:
        return None

    @torch.no_grad()
    def update(averages: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        if not torch.is_floating_point(averages[0]):  # counters (batch norm's batches seen): the current value
            torch._foreach_copy_(averages, current)
            return
        torch._foreach_lerp_(averages, current, 1 - decay_after(int(updates), decay))

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def restore(average: AveragedModel, weights: dict, updates: int) -> None:
    """Resume an average: its weights (the checkpoint's model) and how many updates it has had."""
    average.module.load_state_dict(weights)
    average.n_averaged.fill_(updates)
