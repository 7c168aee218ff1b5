"""Label-error recall: plant wrong labels the way annotators err in the real labelled sample and see how many the
finder ranks on top.

    python -m bench.label_errors [--rate 0.05] [--minutes 8] [--folds 4] [--base-minutes 6] [--seed 0] [--in-sample] [--no-lm]
        [--start synthetic|starter] [--natural]

5 % of the ~1,000 real labels (seeded) get an error of one of five kinds, in equal shares: one letter swapped for a
similar-looking one (M/N, O/D, U/V, ...), a letter dropped, two letters changed, another real name of similar length,
a truncated name. The finder starts from a model trained on the synthetic data only (it never saw these images) and
fine-tunes within ``--minutes``: out of fold (``ocr.curation.label_errors``), k folds, each fine-tuned on the others
and scoring its own. From the same scores, two rankings: by score alone (every doubted label in one list, as before)
and the product's (suspected errors first, the hard-to-read crops listed apart): recall and precision at k = number
planted and 2k, recall per kind, and how many of the top k are hard to read. ``--in-sample`` also runs the old
in-sample finder (fine-tuned on all the noisy labels, then scoring them) on the same budget.

The labels are planted into are the reviewed ones (``bench.reviewed``: the labels a person found wrong set right first),
so that a natural error the finder ranks on top does not count against it. ``--natural`` plants nothing: the real
labels as they are, and the errors to find are the ones a person found by eye; it reports what the top k holds (wrong,
right, unsure or illegible by the review) and the recall per kind of natural error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import replace

import editdistance
import numpy as np

from bench.common import CACHE, REAL, emit, real_split, synthetic
from bench.reviewed import corrected, verdict, wrong
from ocr.curation.label_errors import LabelErrorConfig, find_label_errors, read_samples
from ocr.data.datasets import Sample, csv_path, holdout_split, import_kaggle
from ocr.decoding.decoder import DecoderConfig
from ocr.sharing import STARTER
from ocr.training.loop import Callback, TrainConfig, fit

KINDS = ("similar letter", "dropped letter", "two letters", "other name", "truncated")
SIMILAR = {a: b for pair in ("MN", "OD", "UV", "IL", "EF", "CG", "PR", "HN", "KR", "YV", "QO", "BR", "JI", "TI")
           for a, b in (pair, pair[::-1])}  # each letter to one it is often misread as (the last pair wins)


class Quiet(Callback):
    def on_message(self, text):
        print(text, file=sys.stderr, flush=True)


def corrupt(label: str, others: list[str], kind: str, rng: np.random.Generator) -> str | None:
    """``label`` as an annotator might have got it wrong, of ``kind``; None where that kind cannot apply."""
    letters = [i for i, c in enumerate(label) if c.isalpha()]
    if kind == "similar letter":
        spots = [i for i in letters if label[i] in SIMILAR]
        if not spots:
            return None
        i = int(rng.choice(spots))
        return label[:i] + SIMILAR[label[i]] + label[i + 1:]
    if kind == "dropped letter":
        if len(letters) < 3:
            return None
        i = int(rng.choice(letters[1:]))  # a first letter is seldom dropped
        return label[:i] + label[i + 1:]
    if kind == "two letters":
        if len(letters) < 3:
            return None
        chars = list(label)
        for i in rng.choice(letters, size=2, replace=False):
            chars[i] = str(rng.choice([c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c != chars[i]]))
        return "".join(chars)
    if kind == "other name":
        near = [o for o in others if abs(len(o) - len(label)) <= 1 and o != label]
        return str(rng.choice(near)) if near else None
    if len(label) < 5:  # truncated: the end of a long name cut off (1-3 letters)
        return None
    return label[: len(label) - int(rng.integers(1, min(3, len(label) - 3) + 1))]


def plant(samples: list[Sample], rate: float, seed: int) -> tuple[list[Sample], dict]:
    """``rate`` of the labels made wrong, the kinds in turn; {path: (true label, wrong label, kind)}."""
    rng = np.random.default_rng(seed)
    labels = sorted({s.label for s in samples})
    order = rng.permutation(len(samples)).tolist()
    noisy, planted = list(samples), {}
    for n in range(round(len(samples) * rate)):
        kind = KINDS[n % len(KINDS)]
        while order:
            i = order.pop()
            bad = corrupt(samples[i].label, labels, kind, rng)
            if bad and bad != samples[i].label:
                noisy[i] = replace(samples[i], label=bad)
                planted[samples[i].path] = (samples[i].label, bad, kind)
                break
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


def by_kind(ranked: list, planted: dict, k: int) -> dict:
    top = set(ranked[:k])
    kinds = [kind for kind in [*KINDS, *NATURAL_KINDS] if any(kk == kind for _, _, kk in planted.values())]
    return {kind: f"{sum(1 for p, (_, _, kk) in planted.items() if kk == kind and p in top)}/"
                  f"{sum(1 for _, _, kk in planted.values() if kk == kind)}" for kind in kinds}


NATURAL_KINDS = ("hyphen or space", "one letter", "dropped letter", "added letter", "two or more letters")


def natural_kind(label: str, right: str) -> str:
    """What a natural error is, from the label and the text the crop shows."""
    if label.replace(" ", "").replace("-", "").replace("'", "") == right.replace(" ", "").replace("-", "").replace(
            "'", ""):
        return "hyphen or space"
    if editdistance.eval(label, right) > 1:
        return "two or more letters"
    return "one letter" if len(label) == len(right) else "dropped letter" if len(label) < len(right) else \
        "added letter"


def natural(samples: list[Sample]) -> tuple[list[Sample], dict]:
    """The labels as they are and the ones a person found wrong, in ``plant``'s form."""
    fix = wrong(samples)
    return samples, {s.path: (fix[s.path], s.label, natural_kind(s.label, fix[s.path])) for s in samples if s.path in fix}


def verdicts(ranked: list, by_path: dict, k: int) -> dict:
    """What the review says of the top ``k``."""
    return dict(Counter(verdict(by_path[p]) for p in ranked[:k]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--minutes", type=float, default=8.0, help="fine-tuning budget of the finder")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--base-minutes", type=float, default=6.0)
    ap.add_argument("--synth", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--in-sample", action="store_true", help="also run the in-sample finder on the same budget")
    ap.add_argument("--no-lm", dest="lm", action="store_const", const=None, default="names",
                    help="score with the model alone (greedy), not with the names language model")
    ap.add_argument("--natural", action="store_true",
                    help="plant nothing: find the labels a person found wrong (bench/data/reviewed_labels.csv)")
    ap.add_argument("--start", choices=("synthetic", "starter"), default="synthetic",
                    help="synthetic: a model trained --base-minutes on synthetic data, all 995 labels; starter: the "
                         "shipped model, on the rows it never trained on (801-1000)")
    args = ap.parse_args()
    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA)")
    if args.start == "starter":
        base, samples = str(STARTER), real_split()[1]
    else:
        base, samples = base_model(args.base_minutes, args.synth), import_kaggle(REAL, ("validation",)).samples
    noisy, planted = natural(samples) if args.natural else plant(corrected(samples), args.rate, args.seed)
    n = len(planted)
    emit("label_errors.data", labels=len(noisy), errors="natural" if args.natural else "planted", to_find=n,
         kinds=by_kind(list(planted), planted, n))
    cfg = LabelErrorConfig(folds=args.folds, max_minutes=args.minutes, seed=args.seed, lm=args.lm)
    if args.in_sample:
        in_sample(noisy, planted, base, cfg, args)

    t0 = time.monotonic()
    issues = find_label_errors(noisy, base, CACHE / f"label-errors-oof-{args.start}", cfg, Quiet())
    report(issues, planted, f"out-of-fold ({args.folds} folds), {'names LM' if args.lm else 'model alone'}",
           round((time.monotonic() - t0) / 60, 1), args.natural)


def report(issues: list, planted: dict, finder: str, minutes: float, review: bool) -> None:
    """Both rankings' recall, per kind, and (``review``) what the review says of their top k and of the hard list."""
    n, by_path = len(planted), {x.sample.path: x.sample for x in issues}
    by_score = [x.sample.path for x in sorted(issues, key=lambda x: (-x.score, -x.agrees))]
    hard = [x.sample.path for x in issues if x.hard_to_read]
    errors = [x.sample.path for x in issues if x.score > 0 and not x.hard_to_read]
    seen = (lambda ranked, k: {"review_of_top_k": verdicts(ranked, by_path, k)}) if review else (lambda *_: {})
    emit("label_errors", finder=f"{finder}, by score alone", minutes=minutes,
         hard_to_read_in_top_k=len(set(hard) & set(by_score[:n])),
         found_at_2k_by_kind=by_kind(by_score, planted, 2 * n), **seen(by_score, n), **at_k(by_score, planted))
    emit("label_errors", finder=f"{finder}, hard-to-read apart", minutes=minutes, errors_listed=len(errors),
         hard_to_read_listed=len(hard), to_find_in_hard_list=len(set(hard) & set(planted)),
         found_at_k_by_kind=by_kind(errors, planted, n), found_at_2k_by_kind=by_kind(errors, planted, 2 * n),
         **seen(errors, n), **({"review_of_hard_list": verdicts(hard, by_path, len(hard))} if review else {}),
         **at_k(errors, planted))


def in_sample(noisy: list[Sample], planted: dict, base: str, cfg: LabelErrorConfig, args) -> None:
    t0 = time.monotonic()
    run = CACHE / "label-errors-in-sample"
    fit(noisy, noisy[:64], run, TrainConfig(epochs=1000, max_minutes=args.minutes, lr=cfg.lr, batch_size=cfg.batch_size,
                                           scheduler="cosine", seed=args.seed, log_every=50),
        init=base, callback=Quiet(), progress=False)
    readings = read_samples(run / "last.pt", noisy, DecoderConfig(), "auto")
    scored = sorted(((r.label_error_score, s.path) for s, r in zip(noisy, readings) if r is not None), reverse=True)
    emit("label_errors", finder="in-sample (fine-tuned on every label, scores them)",
         minutes=round((time.monotonic() - t0) / 60, 1), **at_k([p for _, p in scored], planted))


if __name__ == "__main__":
    main()
