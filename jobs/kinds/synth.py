"""``synth``: synthetic handwritten fields of one kind, generated into the data folder and imported."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from db import catalog
from jobs.context import Count, JobContext
from jobs.params import JobKind, require
from ocr.data.synth import KINDS

MAX_N = 2_000_000


@dataclass(frozen=True)
class SynthParams:
    n: int
    name: str
    seed: int = 0
    validation: int = -1  # validation images beside the training ones; -1: 5 % of n
    kind: str = "names"  # ocr.data.synth.KINDS
    unlabelled: bool = False  # import the images without their labels: a pool for Label next and self-training

    def check(self) -> None:
        require(self.kind in KINDS, f"unknown kind {self.kind!r}; choose from {', '.join(KINDS)}")
        require(1 <= self.n <= MAX_N, f"n={self.n} must be between 1 and {MAX_N:,}")
        require(bool(self.name.strip()), "the dataset needs a name")

    @property
    def n_validation(self) -> int:
        if self.unlabelled:
            return 0
        return self.validation if self.validation >= 0 else max(1, self.n // 20)


def add_options(k: argparse.ArgumentParser) -> None:
    k.add_argument("--n", type=int, required=True)
    k.add_argument("--name", required=True)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--validation", type=int, default=-1, help="validation images (default 5 %% of N)")
    # dest: ``kind`` is the subcommand's own attribute
    k.add_argument("--kind", dest="synth_kind", default="names", choices=KINDS,
                   help="names, capitals, dates, numbers, words or mixed")
    k.add_argument("--unlabelled", action="store_true",
                   help="import the images without their labels: a pool to label (Label next) and to self-train on")


def from_options(args: argparse.Namespace) -> dict:
    return {"n": args.n, "name": args.name, "seed": args.seed, "validation": args.validation, "kind": args.synth_kind,
            "unlabelled": args.unlabelled}


class _Stopped(Exception):
    """Raised from the generator's progress callback to end generation at a stop request."""


def run(ctx: JobContext) -> dict:
    from ocr.data.synth import generate, label_rules

    p: SynthParams = KIND.parse(ctx.params)
    out = ctx.settings.data_dir / "datasets" / catalog.slug(p.name)
    n_val, done = p.n_validation, 0
    total = 2 * (p.n + n_val)  # generate, then import every image

    def step(k: int = 1) -> None:
        nonlocal done
        done += k
        made = min(done, p.n + n_val)
        ctx.progress(done / total, f"synthesized {made:,} of {p.n + n_val:,} images",
                     Count(made, p.n + n_val, "image synthesized"))
        if ctx.should_stop():
            raise _Stopped

    try:
        ctx.log(f"writing {p.n:,} training and {n_val:,} validation images to {out}")
        generate(out, p.n, seed=p.seed, split="train", progress=step, kind=p.kind)
        if n_val:
            generate(out, n_val, seed=p.seed + 1_000_003, split="validation", progress=step, kind=p.kind)
    except _Stopped:
        return {"stopped": True}

    def progress(i: int, n: int) -> None:
        ctx.progress((p.n + n_val + i) / total, f"imported {i:,} of {n:,} images", Count(i, n, "image imported"))

    source = out / "train_v2" / "train" if p.unlabelled else out  # the images alone: a pool without labels
    return catalog.import_dataset(ctx.settings, source, p.name, "synthetic", label_rules(p.kind), progress=progress,
                                  should_stop=ctx.should_stop)


KIND = JobKind("synth", "generate synthetic handwritten names and import them", SynthParams, run, add_options,
               from_options)
