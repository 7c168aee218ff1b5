"""Accuracy on real handwriting, k-fold over the 995 usable shared rows: a sharper measure than one 199-row split (one
image moves it 0.5 point).

    python -m bench.kfold [--folds 5] [--minutes 28 | --epochs 26] [--preset small] [--ema 0.999] [--only 0,2]
        [--real-repeat 10] [--rounds 2 [--round-epochs 9] [--resume DIR]] [--pseudo-views 5] [--out DIR]

Each fold trains the starter's recipe (``bench.starter``: the 20,000 synthetic names + the other folds' real rows,
each seen ``--real-repeat`` times an epoch, self-training on the 10,500 unlabelled crops) for ``--minutes`` (or
``--epochs``: the same training on any machine; the starter's 28 minutes were 26 epochs on the 2026-12-04 machine, 7
on the 2026-12-07 one) and reads its own fold with its last checkpoint, greedy and beam 20 + the names LM, scored
against the labels as they are and as reviewed (``bench.reviewed``: the wrong ones set right); with ``--ema``,
also with the weights the average was taken of (``trained_weights_*``). ``--rounds R`` iterates self-training: each
round after the first, the last round's model reads the pool again and a student fine-tunes from it on the labels +
its pseudo-labels for ``--round-epochs`` at the student's learning rate (the product's ``ocr train --teacher CKPT
--init CKPT``); ``--resume DIR`` takes the rounds of each fold done in a finished run of the same recipe (its last
round's model and every round's figures) instead of training them again, and goes on from there to ``--rounds`` in
all; every round's model is scored. ``--pseudo-views N`` reads the pool with N views of each image
(``TrainConfig.pseudo_views``). Nothing is picked on
the test fold: the run validates on 200 held-out synthetic images. A fold's figures are kept in the project,
``bench/data/kfold/RECIPE/fold-K.json`` (figures only; its checkpoints stay in ``OUT``), so the folds can run in
several sessions and on several machines (``--only``, or a rerun skips the folds done); every run prints the mean and
spread of the folds done.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.common import CACHE, REAL, copy_model, emit, further_rounds, synthetic
from bench.reviewed import corrected
from ocr.checkpoint import load_checkpoint, save_checkpoint
from ocr.curation.label_errors import folds_of
from ocr.data.datasets import Sample, csv_path, holdout_split, import_kaggle
from ocr.decoding.decoder import DecoderConfig
from ocr.evaluation.metrics import cer, exact_match
from ocr.recognize import Recognizer
from ocr.training.config import PRESET_NAMES, SELF_TRAIN_SHARE
from ocr.training.loop import Callback, TrainConfig
from ocr.training.selftrain import fit_self_training, pool_files

DECODERS = {"greedy": DecoderConfig(), "names_lm": DecoderConfig(lm="names")}
RESULTS = Path(__file__).resolve().parent / "data" / "kfold"  # each recipe's fold figures, kept with the project


class Log(Callback):
    def __init__(self, fold: int):
        self.fold = fold

    def on_epoch(self, m):
        emit("kfold.epoch", fold=self.fold, epoch=m["epoch"], seconds=round(m["seconds"], 1))

    def on_message(self, text):
        print(f"[fold {self.fold}] {text}", file=sys.stderr, flush=True)


def score(checkpoint: Path, test: list[Sample]) -> dict:
    """Exact match and CER of each decoder on ``test``, against the labels and the reviewed labels."""
    rec = Recognizer(checkpoint)
    labels, reviewed = [s.label for s in test], [s.label for s in corrected(test)]
    out = {}
    for name, config in DECODERS.items():
        texts = [p.text for p in rec.read([s.path for s in test], rec.decoder(config))]
        out[name] = {"exact_match": round(exact_match(labels, texts), 4), "cer": round(cer(labels, texts), 4),
                     "reviewed_exact_match": round(exact_match(reviewed, texts), 4),
                     "reviewed_cer": round(cer(reviewed, texts), 4)}
    return out


def trained_weights_score(checkpoint: Path, test: list[Sample]) -> dict:
    """With weight averaging, the same run read with the weights it averaged (``trained_model``) instead of the
    average: what reading the average is worth, paired on one run."""
    ckpt = load_checkpoint(checkpoint)
    if "trained_model" not in ckpt:
        return {}
    path = checkpoint.with_name("trained.pt")
    save_checkpoint(path, {**ckpt, "model": ckpt.pop("trained_model")})
    return {f"trained_weights_{name}": figures for name, figures in score(path, test).items()}


def run_fold(k: int, real: list[Sample], folds: list[list[int]], args) -> dict:
    held = set(folds[k])
    train = [s for i, s in enumerate(real) if i not in held]
    test = [real[i] for i in folds[k]]
    synth, val = holdout_split(import_kaggle(synthetic(20000)).samples, 0.01, 0)
    cfg = TrainConfig(epochs=args.epochs or 1000, max_minutes=None if args.epochs else args.minutes,
                      self_train=SELF_TRAIN_SHARE, pseudo_lm="names", pseudo_views=args.pseudo_views, ema=args.ema,
                      preset=args.preset)
    run = Path(args.out) / f"fold-{k}"
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.monotonic()
    data, pool = synth + train * args.real_repeat, pool_files(REAL / "unlabelled")
    last, before = (resume(Path(args.resume) / f"fold-{k}", run) if args.resume
                    else first_round(data, val, pool, run, cfg, k))
    rounds, done = before["rounds_figures"], before["rounds"]
    last = further_rounds(data, val, pool, run, cfg, last, args.rounds, args.round_epochs, Log(k),
                          lambda r, model: rounds.setdefault(f"round_{r}", score(model, test)), done)
    epochs = before["epochs"] + (args.rounds - done) * args.round_epochs
    return {"fold": k, "n_test": len(test), "n_train_real": len(train), "epochs": epochs,
            "minutes": round((time.monotonic() - t0) / 60, 1), "budget": args.epochs or f"{args.minutes:g} min",
            "ema": args.ema, "preset": args.preset, "rounds": args.rounds,
            **score(last, test), **trained_weights_score(last, test), **rounds}


def first_round(data: list[Sample], val: list[Sample], pool: list[Path], run: Path, cfg: TrainConfig,
                k: int) -> tuple[Path, dict]:
    """Round 1 of a fold, trained: its last checkpoint and epochs."""
    epochs = fit_self_training(data, val, pool, run, cfg, callback=Log(k))["epochs"]
    return run / "last.pt", {"epochs": epochs, "rounds": 1, "rounds_figures": {}}


def figures_of(done: Path) -> Path | None:
    """The figures of a fold of a ``bench.kfold`` run (``RUN/fold-K``), in the project's ``bench/data/kfold`` or
    beside the run; None while it is not finished."""
    return next((f for f in (RESULTS / done.parent.name / f"{done.name}.json", done.with_suffix(".json"))
                 if f.exists()), None)


def finished(done: Path) -> tuple[Path, dict]:
    """A finished fold of a ``bench.kfold`` run (``RUN/fold-K``): its last round's model and its figures."""
    found = figures_of(done)
    if found is None:
        sys.exit(f"{done} has no finished fold ({done.name}.json there or in {RESULTS})")
    figures = json.loads(found.read_text())
    n = figures.get("rounds", 1)
    model = done / (f"round-{n}" if n > 1 else "") / "last.pt"
    if not model.exists():
        sys.exit(f"{model} is missing")
    return model, figures


def resume(done: Path, run: Path) -> tuple[Path, dict]:
    """The rounds of a fold done in a finished run of the same recipe: its last round's model, copied into ``run``,
    and its figures, with every round's under ``rounds_figures`` (``round_R`` for the last)."""
    model, figures = finished(done)
    n = figures.get("rounds", 1)
    rounds = {key: value for key, value in figures.items() if key.startswith("round_")}
    rounds[f"round_{n}"] = {decoder: figures[decoder] for decoder in DECODERS}
    return copy_model(model, run / f"round-{n}"), {**figures, "rounds": n, "rounds_figures": rounds}


def summarise(done: list[dict]) -> None:
    """Mean and spread (standard deviation across folds) of every figure."""
    out = {"folds_done": [d["fold"] for d in done]}
    for decoder in DECODERS:
        for figure in done[0][decoder]:
            values = [d[decoder][figure] for d in done]
            out[f"{decoder}_{figure}"] = round(statistics.mean(values), 4)
            if len(values) > 1:
                out[f"{decoder}_{figure}_sd"] = round(statistics.stdev(values), 4)
    emit("kfold", **out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=28.0, help="training budget of each fold")
    ap.add_argument("--epochs", type=int, help="train each fold this many epochs instead of --minutes")
    ap.add_argument("--real-repeat", type=int, default=10)
    ap.add_argument("--preset", default="small", choices=PRESET_NAMES, help="the model (ocr.model.PRESETS)")
    ap.add_argument("--ema", type=float, default=0.0, help="weight averaging's decay (TrainConfig.ema); 0: off")
    ap.add_argument("--rounds", type=int, default=1, help="self-training rounds: each after the first reads the pool "
                                                          "with the last round's model and fine-tunes from it")
    ap.add_argument("--round-epochs", type=int, default=9, help="epochs of each round after the first")
    ap.add_argument("--resume", metavar="DIR", help="take each fold's rounds done in this finished k-fold run and go "
                                                    "on from its last round's model")
    ap.add_argument("--pseudo-views", type=int, default=1, help="views of each pool image read for pseudo-labels "
                                                                "(TrainConfig.pseudo_views)")
    ap.add_argument("--only", help="comma-separated fold numbers to run (from 0); default: every fold not done")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="default: data/bench/kfold-{28min|26epochs}[-ema0.999][-rounds2x9] (one recipe and "
                                  "budget per folder)")
    args = ap.parse_args()
    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA)")
    real = import_kaggle(REAL, ("validation",)).samples
    folds = folds_of(len(real), args.folds, args.seed)
    budget = f"{args.epochs}epochs" if args.epochs else f"{args.minutes:g}min"
    preset = "" if args.preset == "small" else f"-{args.preset}"
    rounds = f"-rounds{args.rounds}x{args.round_epochs}" if args.rounds > 1 else ""
    views = f"-pseudoviews{args.pseudo_views}" if args.pseudo_views > 1 else ""
    recipe = f"kfold-{budget}{preset}" + (f"-ema{args.ema:g}" if args.ema else "") + views + rounds
    out = Path(args.out or CACHE / recipe)
    args.out = str(out)
    results = RESULTS / recipe if args.folds == 5 and args.seed == 0 else out  # other splits: not the project's
    results.mkdir(parents=True, exist_ok=True)
    wanted = [int(k) for k in args.only.split(",")] if args.only else range(args.folds)
    for k in wanted:
        result = results / f"fold-{k}.json"
        if not result.exists():
            figures = run_fold(k, real, folds, args)
            emit("kfold.fold", **figures)
            result.write_text(json.dumps(figures, indent=1) + "\n")
    done = [json.loads(p.read_text()) for p in sorted(results.glob("fold-*.json"))]
    if done:
        summarise(done)


if __name__ == "__main__":
    main()
