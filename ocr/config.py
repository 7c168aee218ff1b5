"""Training configuration: one dataclass with its defaults, saved inside every checkpoint.

Kept free of torch so the command lines (``python -m ocr``, ``python -m jobs``) build their options from it instantly.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

PRESET_NAMES = ("small", "large", "textbook")  # the keys of ocr.model.PRESETS


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "small"
    epochs: int = 30
    max_minutes: float | None = None  # plan the run (and its LR schedule) for this budget
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    scheduler: str = "onecycle"  # onecycle | cosine | plateau | constant
    grad_clip: float = 5.0
    augment: bool = True
    val_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"
    workers: int = -1  # -1: 0 on CPU, 4 on a GPU
    data_on_device: bool | None = None  # images + augmentation on the training device (ocr.device_data); None: on CUDA
    precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp16 there; fp32 on the CPU) | fp32 | bf16 | fp16
    max_bad_batches: int = 20  # consecutive non-finite losses before giving up
    log_every: int = 10
    diagnose: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From a checkpoint's or a job's saved config; checkpoints of earlier versions said ``amp`` for precision."""
        d = dict(d)
        if "amp" in d:
            d.setdefault("precision", "auto" if d.pop("amp") else "fp32")
        return cls(**d)


SCHEDULERS = ("onecycle", "cosine", "plateau", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused with a clear message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (``nan``, ``inf`` and 0 are refused with a clear message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
    return value


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The TrainConfig options both command lines take, with TrainConfig's defaults."""
    d = TrainConfig()
    parser.add_argument("--preset", default=d.preset, choices=PRESET_NAMES)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--max-minutes", type=positive_float, help="plan the run (and its LR schedule) for this budget")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=positive_float, default=d.lr)
    parser.add_argument("--scheduler", default=d.scheduler, choices=SCHEDULERS)
    parser.add_argument("--precision", default=d.precision, choices=("auto", *PRECISIONS),
                        help="auto: bf16 on a GPU that has it, else fp16 there; fp32 on the CPU")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--val-fraction", type=positive_float, default=d.val_fraction)
    parser.add_argument("--seed", type=int, default=d.seed)
