"""Any handwritten field: a model trained on synthetic ``mixed`` fields (its character set taken from the labels), and
a names model fine-tuned onto digits (its output layer grown), measured per kind of field.

    python -m bench.charset [--mixed-minutes 10] [--finetune-minutes 3] [--n 20000] [--held-out 300]

1. ``mixed``: ``--n`` synthetic fields of every kind (``ocr synth --kind mixed``: capitals with their accents, dates,
   numbers, words), trained ``--mixed-minutes`` with ``--charset auto`` (it becomes ``latin``); exact match and CER
   on ``--held-out`` fresh images of each kind, greedy, with the language model of its training labels, and with
   ``--lm names`` (for ``latin``, which holds the names set, the names LM mixed with the labels').
2. names -> digits: the synthetic-names model of ``bench.label_errors.base_model`` fine-tuned ``--finetune-minutes``
   on dates and numbers plus as many synthetic names (so it keeps them); before and after on held-out names, held-out
   dates/numbers and the real Kaggle validation rows (CSV rows 801-1000), greedy and with ``--lm names`` (for the
   grown model, the names LM mixed with the LM of its training labels).

One JSON line per figure; runs are cached under ``data/bench/charset``.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.common import CACHE, REAL, emit, real_split
from bench.label_errors import Quiet, base_model
from ocr.data.datasets import csv_path, holdout_split, import_kaggle
from ocr.data.synth import generate, label_rules
from ocr.decoding.decoder import DecoderConfig
from ocr.evaluation.metrics import cer, exact_match
from ocr.recognize import Recognizer
from ocr.training.loop import TrainConfig, fit

OUT = CACHE / "charset"
KINDS = ("names", "capitals", "dates", "numbers", "words")
MIXED_KINDS = ("capitals", "dates", "numbers", "words")
HELD_OUT_SEEDS = {"names": 900, "dates": 902, "numbers": 903, "words": 904, "capitals": 904}  # as the README's run


def fields(kind: str, n: int, seed: int, split: str = "train") -> list:
    folder = OUT / f"synth-{kind}-{n}-s{seed}"
    if not csv_path(folder, split).exists():
        generate(folder, n, seed=seed, split=split, workers=os.cpu_count() or 1, kind=kind)
    return import_kaggle(folder, (split,), rules=label_rules(kind)).samples


def score(checkpoint: str, samples: list, lm: str | None) -> dict:
    rec = Recognizer(checkpoint)
    readings = rec.score_files([s.path for s in samples], decoder=rec.decoder(DecoderConfig(lm=lm)))
    texts = [r.text if r is not None else "" for r in readings]
    labels = [s.label for s in samples]
    return {"exact_match": round(exact_match(labels, texts), 4), "cer": round(cer(labels, texts), 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixed-minutes", type=float, default=10.0)
    ap.add_argument("--finetune-minutes", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=20000, help="synthetic mixed fields to train on")
    ap.add_argument("--digits", type=int, default=5000, help="dates + numbers to fine-tune on (as many names)")
    ap.add_argument("--held-out", type=int, default=300, help="fresh images of each kind to measure on")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    held = {kind: fields(kind, args.held_out, seed=HELD_OUT_SEEDS[kind], split="validation") for kind in KINDS}
    held["digits"] = held["dates"] + held["numbers"]

    mixed_dir = OUT / f"mixed-{args.n}-{args.mixed_minutes:g}min"
    if not (mixed_dir / "best.pt").exists():
        train, val = holdout_split(fields("mixed", args.n, seed=0), 0.02, 0)
        summary = fit(train, val, mixed_dir, TrainConfig(epochs=1000, max_minutes=args.mixed_minutes),
                      callback=Quiet(), progress=False)
        emit("charset.mixed.train", charset=summary["charset"], epochs=summary["epochs"],
             train_samples=summary["train_samples"], minutes=args.mixed_minutes)
    mixed = str(mixed_dir / "best.pt")
    for kind in MIXED_KINDS:
        for lm, decoder in ((None, "greedy"), ("labels", "beam20+labels LM"), ("names", "beam20+names & labels LM")):
            emit("charset.mixed", kind=kind, decoder=decoder, n=len(held[kind]), **score(mixed, held[kind], lm))

    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA): the fine-tuning part needs it")
    base = base_model(6.0, 20000)
    tuned_dir = OUT / f"names-to-digits-{args.digits}-{args.finetune_minutes:g}min"
    if not (tuned_dir / "best.pt").exists():
        half = args.digits // 2
        digits = fields("dates", half, seed=11) + fields("numbers", args.digits - half, seed=12)
        names = fields("names", args.digits, seed=13)
        train, val = holdout_split(digits + names, 0.03, 0)
        summary = fit(train, val, tuned_dir, TrainConfig(epochs=1000, max_minutes=args.finetune_minutes, lr=1e-3),
                      init=base, callback=Quiet(), progress=False)
        emit("charset.finetune.train", added=summary["charset_added"], epochs=summary["epochs"],
             train_samples=summary["train_samples"], minutes=args.finetune_minutes)
    tuned = str(tuned_dir / "best.pt")
    _, real_val = real_split()
    for name, checkpoint in (("names model", base), ("fine-tuned to digits", tuned)):
        for lm in (None, "names"):  # "names" is the names LM mixed with the labels' for the grown model
            decoder = "greedy" if lm is None else "beam20+LM"
            emit("charset.finetune", model=name, data="real Kaggle rows 801-1000", decoder=decoder, n=len(real_val),
                 **score(checkpoint, real_val, lm))
            for kind in ("names", "digits"):
                emit("charset.finetune", model=name, data=f"synthetic {kind}", decoder=decoder, n=len(held[kind]),
                     **score(checkpoint, held[kind], lm))


if __name__ == "__main__":
    main()
