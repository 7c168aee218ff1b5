"""Label-error recall: plant realistic wrong labels in the real labelled sample and see how many each finder ranks
on top.

    python -m bench.label_errors [--rate 0.05] [--minutes 8] [--folds 4] [--base-minutes 6] [--seed 0]

5 % of the ~1,000 real labels (seeded) get a realistic error: another real name of similar length, one or two
letters changed, a truncated name, or a doubled letter or name. Both finders start from a model trained on the
synthetic data only (it never saw these images) and get the same fine-tuning budget (``--minutes``):
(a) in-sample, today's ranking: fine-tune on all the noisy labels, then score them with that model;
(b) out-of-fold (``ocr.curation.label_errors``): k folds, each fine-tuned on the others and scoring its own.
Precision and recall at k = number planted and k = twice that.
"""

from __future__ import annotations

import argparse
import string
import sys
import time
from dataclasses import replace

import numpy as np

from bench.common import CACHE, REAL, emit, synthetic
from ocr.curation.label_errors import LabelErrorConfig, find_label_errors, read_samples
from ocr.data.datasets import Sample, csv_path, holdout_split, import_kaggle
from ocr.decoding.decoder import DecoderConfig
from ocr.training.loop import Callback, TrainConfig, fit


class Quiet(Callback):
    def on_message(self, text):
        print(text, file=sys.stderr, flush=True)


def corrupt(label: str, others: list[str], rng: np.random.Generator) -> tuple[str, str]:
    """A realistic wrong label for ``label`` and its kind."""
    kind = str(rng.choice(["other name", "letters", "truncated", "doubled"]))
    if kind == "other name":
        near = [o for o in others if abs(len(o) - len(label)) <= 1 and o != label] or \
            sorted((o for o in others if o != label), key=lambda o: abs(len(o) - len(label)))[:20]
        return str(rng.choice(near)), kind
    if kind == "letters":
        chars = list(label)
        for i in rng.choice(len(chars), size=min(len(chars), int(rng.integers(1, 3))), replace=False):
            chars[i] = rng.choice([c for c in string.ascii_uppercase if c != chars[i]])
        return "".join(chars), kind
    if kind == "truncated" and len(label) >= 4:
        return label[: len(label) - int(rng.integers(1, min(3, len(label) - 2) + 1))], kind
    if len(label) <= 8 and " " not in label:
        return f"{label} {label}", "doubled"
    i = int(rng.integers(len(label)))
    return label[: i + 1] + label[i:], "doubled"


def plant(samples: list[Sample], rate: float, seed: int) -> tuple[list[Sample], dict]:
    rng = np.random.default_rng(seed)
    labels = sorted({s.label for s in samples})
    chosen = rng.choice(len(samples), size=round(len(samples) * rate), replace=False)
    noisy, planted = list(samples), {}
    for i in chosen:
        wrong, kind = corrupt(samples[i].label, labels, rng)
        noisy[i] = replace(samples[i], label=wrong)
        planted[samples[i].path] = (samples[i].label, wrong, kind)
    return noisy, planted


def at_k(ranked: list, planted: dict) -> dict:
    n = len(planted)
    out = {}
    for name, k in (("k", n), ("2k", 2 * n)):
        hits = sum(1 for path in ranked[:k] if path in planted)
        out[f"precision_at_{name}"] = round(hits / k, 3)
        out[f"recall_at_{name}"] = round(hits / n, 3)
    return out


def base_model(minutes: float, synth: int) -> str:
    """The start of both finders: trained on synthetic data only (cached)."""
    out = CACHE / f"label-errors-base-{minutes:g}min"
    if not (out / "best.pt").exists():
        train, val = holdout_split(import_kaggle(synthetic(synth)).samples, 0.02, 0)
        fit(train, val, out, TrainConfig(epochs=1000, max_minutes=minutes), callback=Quiet(), progress=False)
    return str(out / "best.pt")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--minutes", type=float, default=8.0, help="fine-tuning budget of each finder")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--base-minutes", type=float, default=6.0)
    ap.add_argument("--synth", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA)")
    base = base_model(args.base_minutes, args.synth)
    samples = import_kaggle(REAL, ("validation",)).samples
    noisy, planted = plant(samples, args.rate, args.seed)
    kinds = {}
    for _, _, kind in planted.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    emit("label_errors.data", labels=len(noisy), planted=len(planted), kinds=kinds)
    cfg = LabelErrorConfig(folds=args.folds, max_minutes=args.minutes, seed=args.seed)

    t0 = time.monotonic()
    run = CACHE / "label-errors-in-sample"
    fit(noisy, noisy[:64], run, TrainConfig(epochs=1000, max_minutes=args.minutes, lr=cfg.lr, batch_size=cfg.batch_size,
                                           scheduler="cosine", seed=args.seed, log_every=50),
        init=base, callback=Quiet(), progress=False)
    readings = read_samples(run / "last.pt", noisy, DecoderConfig(), "auto")
    scored = sorted(((r.label_error_score, s.path) for s, r in zip(noisy, readings) if r is not None), reverse=True)
    emit("label_errors", finder="in-sample (fine-tuned on every noisy label, scores them)",
         minutes=round((time.monotonic() - t0) / 60, 1), **at_k([p for _, p in scored], planted))

    t0 = time.monotonic()
    issues = find_label_errors(noisy, base, CACHE / "label-errors-oof", cfg, Quiet())
    minutes = round((time.monotonic() - t0) / 60, 1)
    ranked = [x.sample.path for x in issues]
    found = {x.sample.path: x for x in issues[: 2 * len(planted)] if x.sample.path in planted}
    by_kind = {k: f"{sum(1 for p, (_, _, kk) in planted.items() if kk == k and p in found)}/{n}" for k, n in kinds.items()}
    emit("label_errors", finder=f"out-of-fold ({args.folds} folds)", minutes=minutes, found_at_2k_by_kind=by_kind,
         **at_k(ranked, planted))


if __name__ == "__main__":
    main()
