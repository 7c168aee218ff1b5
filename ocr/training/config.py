"""Training configuration: one dataclass with its defaults, saved inside every checkpoint.

Kept free of torch so the command lines (``python -m ocr``, ``python -m jobs``) build their options from it instantly.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from ocr.alphabet import NAMED_CHARSETS, LabelRules
from ocr.decoding.types import VIEW_OFFSETS, views_allowed

PRESET_NAMES = ("small", "large", "textbook")  # the keys of ocr.model.PRESETS
SCHEDULERS = ("onecycle", "cosine", "plateau", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
SELF_TRAIN_SHARE = 0.35  # the best recipe's share of a run given to self-training (bench.starter), what forms offer


class ConfigError(ValueError):
    """A training configuration out of its ranges, with a message meant for the user."""


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
    ema: float = 0.0  # weight averaging (ocr.training.averaging): the share of the average kept each step, e.g. 0.999; 0: off
    augment: bool = True
    val_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"
    workers: int = -1  # -1: 0 on CPU, 4 on a GPU
    data_on_device: bool | None = None  # batches built on the device (ocr.data.batches), not by CPU workers; None: on CUDA
    precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp16 there; fp32 on the CPU) | fp32 | bf16 | fp16
    max_bad_batches: int = 20  # consecutive non-finite losses before giving up
    log_every: int = 10
    diagnose: bool = False
    # self-training (ocr.training.selftrain): the share of the run (epochs or budget) that fine-tunes on pseudo-labels of the
    # unlabelled pool read by the first phase's model; 0 turns it off
    self_train: float = 0.0
    pseudo_threshold: float = 0.5  # keep a reading of the pool when P(text | image) is at least this (best recipe)
    pseudo_lm: str | None = "names"  # the language model the pool is read with ("names", a word list; None: greedy)
    pseudo_views: int = 1  # the views of each pool image read (DecoderConfig.views: test-time augmentation)
    # the character set of a new model (ocr.alphabet.resolve_charset): auto | data | names | digits | latin | a file
    charset: str = "auto"
    grow_charset: bool = True  # fine-tuning onto labels with new characters adds them (False: leave those labels out)

    def __post_init__(self) -> None:
        """Every range rule of a run, in one place: both command lines, the jobs and the pages build one."""
        rules = (
            (self.preset in PRESET_NAMES, f"unknown preset {self.preset!r}; choose from {', '.join(PRESET_NAMES)}"),
            (self.scheduler in SCHEDULERS, f"unknown scheduler {self.scheduler!r}; choose from {', '.join(SCHEDULERS)}"),
            (self.precision in ("auto", *PRECISIONS),
             f"unknown precision {self.precision!r}; choose from auto, {', '.join(PRECISIONS)}"),
            (self.epochs >= 1 and self.batch_size >= 1 and self.lr > 0 and (self.max_minutes or 1) > 0,
             "epochs, batch_size, lr and max_minutes must be positive"),
            (0 < self.val_fraction < 1, f"val_fraction={self.val_fraction} must be between 0 and 1"),
            (0 <= self.ema < 1, f"ema={self.ema} must be in [0, 1): the share of the weights' average kept each step"),
            (0 <= self.self_train < 1, f"self_train={self.self_train} must be a share of the run in [0, 1)"),
            (0 < self.pseudo_threshold <= 1, f"pseudo_threshold={self.pseudo_threshold} must be in (0, 1]"),
            (views_allowed(self.pseudo_views),
             f"pseudo_views={self.pseudo_views} must be between 1 and {len(VIEW_OFFSETS)} (DecoderConfig.views)"),
        )
        for ok, message in rules:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From a checkpoint's or a job's saved config; checkpoints of earlier versions said ``amp`` for precision."""
        d = dict(d)
        if "amp" in d:
            d.setdefault("precision", "auto" if d.pop("amp") else "fp32")
        return cls(**d)



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
    parser.add_argument("--ema", type=finite_float, default=d.ema, metavar="DECAY",
                        help="save and read a moving average of the weights, DECAY of it kept each step (0.999); "
                             "0: the weights as trained")
    parser.add_argument("--val-fraction", type=positive_float, default=d.val_fraction)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--self-train", type=finite_float, default=d.self_train, metavar="SHARE",
                        help="the last SHARE of the run, in [0, 1), fine-tunes on pseudo-labels of the unlabelled "
                             f"images (ocr: --unlabelled DIR; jobs: --unlabelled DATASET); {SELF_TRAIN_SHARE} is the "
                             "best recipe's")
    parser.add_argument("--pseudo-threshold", type=finite_float, default=d.pseudo_threshold,
                        help="keep a reading of an unlabelled image when P(text | image) is at least this, in (0, 1]")
    parser.add_argument("--pseudo-lm", default=d.pseudo_lm,
                        help="read the unlabelled images with this language model ('names', a word-list file, "
                             "'none' for greedy)")
    parser.add_argument("--pseudo-views", type=int, default=d.pseudo_views, metavar="N",
                        help="read each unlabelled image N times, moved up and down, the model's outputs averaged "
                             "(1-7; test-time augmentation, see ocr predict --views)")
    parser.add_argument("--charset", default=d.charset, metavar="SET",
                        help="character set of a new model: auto (names, digits or latin, whichever holds the "
                             "labels), data (the labels' own characters), names, digits, latin, or a file listing them")
    parser.add_argument("--no-grow-charset", action="store_true",
                        help="when fine-tuning, leave out labels with characters the model lacks instead of adding them")


def add_label_options(parser: argparse.ArgumentParser) -> None:
    """How a dataset's labels are read (``ocr.alphabet.LabelRules``). Without any of these options the data's own
    ``label_rules.json`` (``ocr synth`` writes it) is used, else the Kaggle names forms' defaults."""
    d = LabelRules()
    parser.add_argument("--label-charset", choices=("any", *NAMED_CHARSETS),
                        help=f"labels with characters outside this set are excluded (default: the data's own rules, "
                             f"else {d.charset}; any: only characters no set allows, such as control characters "
                             "and emoji)")
    parser.add_argument("--keep-case", action="store_true", default=None, help="do not upper-case labels")
    parser.add_argument("--strip-accents", action="store_true", default=None,
                        help="transliterate labels to ASCII (é -> e)")


def label_rules(args: argparse.Namespace) -> LabelRules | None:
    """The rules the options ask for, or None when none was given (the data's own, else the defaults)."""
    return LabelRules.given(upper=None if args.keep_case is None else not args.keep_case,
                            strip_accents=args.strip_accents, charset=args.label_charset)


def training_options(args: argparse.Namespace) -> dict:
    """The TrainConfig fields of parsed ``add_training_options`` arguments."""
    return {"preset": args.preset, "epochs": args.epochs, "max_minutes": args.max_minutes,
            "batch_size": args.batch_size, "lr": args.lr, "scheduler": args.scheduler, "precision": args.precision,
            "augment": not args.no_augment, "ema": args.ema, "val_fraction": args.val_fraction, "seed": args.seed,
            "self_train": args.self_train, "pseudo_threshold": args.pseudo_threshold,
            "pseudo_lm": None if args.pseudo_lm in (None, "", "none") else args.pseudo_lm,
            "pseudo_views": args.pseudo_views, "charset": args.charset, "grow_charset": not args.no_grow_charset}
