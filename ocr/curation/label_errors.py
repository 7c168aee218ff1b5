"""Label errors found out of fold: confident learning for sequences.

A model scoring the labels it was trained on has memorised the wrong ones it should flag; confident learning needs
out-of-sample scores (cleanlab's ``find_label_issues`` asks for cross-validated probabilities). So the labelled
samples are cut into k folds, and for each fold a model fine-tuned from the current one on the other folds reads it.
A sample's score is log P(reading | image) - log P(label | image) under the model that never saw its label: 0 when
the reading is the label, large when the model believes another text. Large too when the model cannot read the crop at
all (both texts unlikely, the label far less): so a doubted label whose reading the model is less sure of than of
nearly every text it reads right (``hard_threshold``: the 10th percentile of its confidence on the labels it reads,
at most ``HARD_TO_READ``, cleanlab's per-class threshold idea for sequences) is listed apart as hard to read (to
label, exclude or mark unreadable), unless the current model reads it (nearly) the same way, which makes the reading
a sure one after all, or the label is so unlikely (``UNLIKELY_LABEL_P``) that it is wrong whatever the crop
shows. The current model's own reading is kept as evidence beside it (a label both models disagree
with is the likeliest error).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import editdistance
import numpy as np

from ocr.curation import HARD_TO_READ, UNLIKELY_LABEL_P
from ocr.data.datasets import Sample
from ocr.decoding.decoder import DecoderConfig
from ocr.training.loop import Callback, TrainConfig, TrainingError, fit

MIN_LABELS = 50  # fewer, and a fold's model learns nothing from the other folds that it did not already know
MAX_FOLD_EPOCHS = 200  # a fold's cap under a budget (8 epochs had used 0.9 of an 8-minute budget: weaker readers)


@dataclass(frozen=True)
class LabelErrorConfig:
    folds: int = 4
    max_minutes: float | None = 8.0  # fine-tuning budget for all the folds together, used whole; None: ``epochs``
    epochs: int = 8  # per fold without a budget (with one, the budget plans them, up to ``MAX_FOLD_EPOCHS``)
    lr: float = 5e-4
    batch_size: int = 32
    # read with this language model, which counts in the score too (``Reading.label_error_score``): a label is doubted
    # when the model and the LM together prefer another text. None: greedy, the model alone (recall at 2k of the
    # natural errors 0.65 -> 0.88 with "names", bench.label_errors --natural --start starter)
    lm: str | None = "names"
    device: str = "auto"
    seed: int = 0


@dataclass(frozen=True)
class LabelIssue:
    sample: Sample
    fold: int
    reading: str  # the out-of-fold model's reading
    confidence: float  # its decoder's P(reading | image)
    score: float  # Reading.label_error_score under the out-of-fold model, the LM on both sides (0: it reads the label)
    label_log_prob: float
    in_sample_reading: str | None  # the current model's reading, for agreement
    hard_to_read: bool = False  # doubted, but read less surely than nearly every text it reads right (``mark_hard``)

    @property
    def agrees(self) -> bool:
        """The out-of-fold and the current model read the same text, and it is not the label."""
        return self.reading != self.sample.label and self.reading == self.in_sample_reading

    @property
    def readings_agree(self) -> bool:
        """The two models read (nearly) the same other text: at most one character in four differs between them."""
        other = self.in_sample_reading
        if other is None or self.reading == self.sample.label or other == self.sample.label:
            return False
        return editdistance.eval(self.reading, other) <= 0.25 * max(len(self.reading), len(other), 1)

    @property
    def label_unlikely(self) -> bool:
        """The model gives the label less than ``UNLIKELY_LABEL_P`` a character: whatever it reads, not this."""
        return self.label_log_prob / max(1, len(self.sample.label)) < math.log(UNLIKELY_LABEL_P)

    def evidence(self) -> dict:
        return {"fold": self.fold, "reading": self.reading, "confidence": self.confidence, "score": self.score,
                "label_log_prob": self.label_log_prob, "in_sample_reading": self.in_sample_reading,
                "agrees": self.agrees, "hard_to_read": self.hard_to_read}


def hard_threshold(issues: list[LabelIssue]) -> float:
    """The confidence below which a doubted reading is hard to read: the 10th percentile of the model's confidence
    on the labels it reads right (a weak model is unsure of everything, a strong one of little), at most
    ``HARD_TO_READ``; 0 (nothing is hard) when it reads no label right."""
    right = [x.confidence for x in issues if x.reading == x.sample.label]
    return min(HARD_TO_READ, float(np.quantile(right, 0.1))) if right else 0.0


def mark_hard(issues: list[LabelIssue]) -> tuple[list[LabelIssue], float]:
    """The issues with ``hard_to_read`` set: doubted, read below ``hard_threshold``, not (nearly) alike by the
    current model, and a label not so unlikely that it is wrong whatever the crop shows; and the threshold."""
    t = hard_threshold(issues)
    return [replace(x, hard_to_read=x.score > 0 and x.confidence < t and not x.readings_agree and not x.label_unlikely)
            for x in issues], t


def rank(issues: list[LabelIssue]) -> list[LabelIssue]:
    """Suspected errors first (highest score, both models agreeing first among equals), then the hard-to-read ones
    (highest score first), then the labels no model doubts."""
    return sorted(issues, key=lambda x: (x.score <= 0, x.hard_to_read, -x.score, -x.agrees))


def check_request(samples: list[Sample], cfg: LabelErrorConfig) -> None:
    """Refuse a search that cannot work, before anything is written."""
    if len(samples) < MIN_LABELS:
        raise TrainingError(f"finding label errors needs at least {MIN_LABELS} labelled samples; this data has "
                            f"{len(samples)}")
    if not 2 <= cfg.folds <= len(samples) // 10:
        raise TrainingError(f"folds={cfg.folds}: choose between 2 and {len(samples) // 10} for {len(samples)} labels "
                            "(at least 10 labels a fold)")
    if cfg.max_minutes is not None and not cfg.max_minutes > 0:
        raise TrainingError(f"max_minutes={cfg.max_minutes} must be above 0")


def folds_of(n: int, k: int, seed: int) -> list[list[int]]:
    """Sample indices cut into ``k`` seeded folds of near-equal size."""
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(order[i::k].tolist()) for i in range(k)]


def read_samples(checkpoint: Path, samples: list[Sample], decoder_config: DecoderConfig, device: str,
                 batch_size: int = 128) -> list:
    """``Recognizer.score`` of every sample against its label (``ocr.recognize.Reading``); unreadable images are None."""
    from ocr.recognize import Recognizer

    rec = Recognizer(checkpoint, device=device)
    with rec.decoder(decoder_config, images=len(samples)) as decoder:
        return rec.score_files([s.path for s in samples], [s.label for s in samples], decoder, batch_size)


class _Fold(Callback):
    def __init__(self, inner: Callback, fold: int, folds: int):
        self.inner, self.fold, self.folds = inner, fold, folds

    def on_epoch(self, m: dict) -> None:
        self.inner.on_epoch({**m, "fold": self.fold})

    def on_message(self, text: str) -> None:
        self.inner.on_message(f"[fold {self.fold + 1}/{self.folds}] {text}")

    def should_stop(self) -> bool:
        return self.inner.should_stop()


def find_label_errors(samples: list[Sample], checkpoint: str | Path, out_dir: str | Path,
                      cfg: LabelErrorConfig = LabelErrorConfig(), callback: Callback | None = None) -> list[LabelIssue]:
    """Every sample scored out of fold, most likely error first. Writes ``out_dir/fold*/`` (the fold models) and
    ``out_dir/label_issues.json``. A stop request ends it early with the folds done so far."""
    check_request(samples, cfg)
    cb = callback or Callback()
    out = Path(out_dir)
    decoder = DecoderConfig(lm=cfg.lm)
    started = time.monotonic()
    in_sample = read_samples(Path(checkpoint), samples, decoder, cfg.device)
    issues: list[LabelIssue] = []
    folds = folds_of(len(samples), cfg.folds, cfg.seed)
    for k, held in enumerate(folds):
        held_set = set(held)
        train = [s for i, s in enumerate(samples) if i not in held_set]
        held_samples = [samples[i] for i in held]
        budget = None
        if cfg.max_minutes is not None:
            budget = max(0.1, (cfg.max_minutes - (time.monotonic() - started) / 60) / (cfg.folds - k))
        epochs = cfg.epochs if budget is None else MAX_FOLD_EPOCHS
        train_cfg = TrainConfig(epochs=epochs, max_minutes=budget, lr=cfg.lr, batch_size=cfg.batch_size,
                                scheduler="cosine", device=cfg.device, seed=cfg.seed + k, log_every=50)
        # validation only reports progress: the fold's last model is the one that reads the held-out fold
        summary = fit(train, held_samples[:64], out / f"fold{k + 1}", train_cfg, init=checkpoint,
                      callback=_Fold(cb, k, cfg.folds), progress=False)
        for i, reading in zip(held, read_samples(out / f"fold{k + 1}" / "last.pt", held_samples, decoder, cfg.device)):
            if reading is None:
                continue
            issues.append(LabelIssue(samples[i], k, reading.text, reading.confidence, reading.label_error_score,
                                     reading.label_log_prob, in_sample[i].text if in_sample[i] else None))
        cb.on_message(f"fold {k + 1}/{cfg.folds} scored ({len(held)} labels, {summary['epochs']} epoch(s))")
        cb.on_progress(k + 1, cfg.folds, "fold")
        if cb.should_stop():
            break
    issues, threshold = mark_hard(issues)
    issues = rank(issues)
    (out / "label_issues.json").write_text(json.dumps({
        "config": asdict(cfg), "checkpoint": str(checkpoint), "seconds": round(time.monotonic() - started, 1),
        "hard_to_read_below": threshold,
        "issues": [{"path": str(x.sample.path), "label": x.sample.label, **x.evidence()} for x in issues]}, indent=1))
    return issues


__all__ = ["HARD_TO_READ", "LabelErrorConfig", "LabelIssue", "MIN_LABELS", "check_request", "find_label_errors",
           "folds_of", "hard_threshold", "mark_hard", "rank", "read_samples"]
