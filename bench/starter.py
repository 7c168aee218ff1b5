"""The starter model that ships with the project (``ocr/sharing/starter/``: model.safetensors, config.json, README.md model
card), rebuilt by one command with the project's best CPU recipe (the accuracy row of README):

    python -m bench.starter [--minutes 28 | --epochs 26] [--rounds 2 [--round-epochs 9]
        [--resume MODEL [--rounds-done 1]]] [--checkpoint CKPT]

Trained on the embedded default data (20,000 synthetic names, seed 0) plus the real Kaggle rows 1-800 of the shared
sample (each seen 10 times an epoch), self-training on its 10,500 unlabelled real crops (``TrainConfig.self_train``
0.35, pseudo-labels read with beam 20 + the names LM at P >= 0.5); the checkpoint is picked on, and the card's figures
measured on, the real rows 801-1000, which it never trains on. ``--epochs`` trains that many epochs instead of
``--minutes`` (the same training on any machine). ``--rounds R`` iterates self-training (``bench.common.further_rounds``,
as ``bench.kfold`` does): each round after the first, the last model reads the pool again and a student fine-tunes
from it for ``--round-epochs``; the last round's last checkpoint ships (nothing is picked on rows 801-1000 then).
``--resume MODEL`` (a checkpoint or a model folder, e.g. today's ``ocr/sharing/starter``) is the model after
``--rounds-done`` rounds (default 1), not trained again (``--minutes`` / ``--epochs``: round 1's budget, for the
card). ``--checkpoint`` packages a model already trained (``--minutes`` / ``--epochs`` / ``--rounds``: how, for the
card).
A fresh database registers the folder as its default model (``db.registry.register_shipped_model``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from bench.common import CACHE, REAL, copy_model, emit, further_rounds, real_split, synthetic
from bench.reviewed import corrected
from ocr.data.datasets import csv_path, import_kaggle
from ocr.decoding.decoder import DecoderConfig
from ocr.evaluation.metrics import cer, exact_match
from ocr.recognize import Recognizer
from ocr.sharing import STARTER
from ocr.sharing.export import export
from ocr.sharing.publish import SAMPLES, Evaluation, model_card
from ocr.training.config import SELF_TRAIN_SHARE
from ocr.training.loop import Callback, TrainConfig
from ocr.training.selftrain import fit_self_training, pool_files

ABOUT = ("The starter model of the project: trained {budget} on the embedded synthetic names "
         "(20,000, `ocr synth`, seed 0) plus {n_real} real labelled crops of the Kaggle "
         "`landlord/handwriting-recognition` forms (validation CSV rows 1-800), self-training on 10,500 unlabelled "
         "real crops of the same forms{first_kept}: a teacher for 65 % of the time, then a student from it on labels + "
         "pseudo-labels.{rounds} {picked} Rebuild it with `{command}`.")
PICKED_BEST = ("The checkpoint was picked by its greedy CER on the real rows 801-1000, which it never trained on and "
               "which the figures below are measured on.")
PICKED_LAST = ("The last round's last checkpoint ships: nothing was picked on the real rows 801-1000, which it never "
               "trained on and which the figures below are measured on.")
ROUNDS = (" Then {more}: the last model read the unlabelled crops again ({kept:,} pseudo-labels kept the last time) "
          "and a student fine-tuned from it for {epochs} epochs at half the rate.")


class Log(Callback):
    def on_epoch(self, m):
        emit("starter.epoch", epoch=m["epoch"], val_exact_match=round(m["val_exact_match"], 4),
             val_cer=round(m["val_cer"], 4))

    def on_message(self, text):
        print(text, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=28.0)
    ap.add_argument("--epochs", type=int, help="train this many epochs instead of --minutes")
    ap.add_argument("--real-repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1, help="self-training rounds: each after the first reads the pool "
                                                          "with the last round's model and fine-tunes from it")
    ap.add_argument("--round-epochs", type=int, default=9, help="epochs of each round after the first")
    ap.add_argument("--resume", metavar="MODEL", help="a checkpoint or model folder after --rounds-done rounds: "
                                                      "the rounds go on from it")
    ap.add_argument("--rounds-done", type=int, default=1, help="the rounds --resume's model has had")
    ap.add_argument("--checkpoint", help="package this checkpoint instead of training")
    ap.add_argument("--out", default=str(STARTER))
    args = ap.parse_args()
    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA)")
    if args.checkpoint and args.resume:
        sys.exit("--checkpoint packages a model as it is: --resume trains")
    if args.resume and not 1 <= args.rounds_done < args.rounds:
        sys.exit(f"--rounds-done {args.rounds_done}: --resume goes on to --rounds {args.rounds}, so it must be from 1 "
                 f"to {args.rounds - 1}")
    checkpoint = Path(args.checkpoint) if args.checkpoint else train(args)
    package(checkpoint, args)


def budget(args) -> str:
    return f"{args.epochs} epochs" if args.epochs else f"{args.minutes:g} CPU-minutes"


def train(args) -> Path:
    """Round 1 (trained, or ``--resume``'s rounds), then the further rounds; the checkpoint that ships."""
    real_train, real_val = real_split()
    name = f"{args.epochs}epochs" if args.epochs else f"{args.minutes:g}min"
    run = CACHE / (f"starter-{name}" + (f"-rounds{args.rounds}x{args.round_epochs}" if args.rounds > 1 else ""))
    t0 = time.monotonic()
    data = import_kaggle(synthetic(20000)).samples + real_train * args.real_repeat
    pool = pool_files(REAL / "unlabelled")
    cfg = TrainConfig(epochs=args.epochs or 1000, max_minutes=None if args.epochs else args.minutes,
                      self_train=SELF_TRAIN_SHARE, pseudo_lm="names")
    shutil.rmtree(run, ignore_errors=True)
    if args.resume:
        first = copy_model(Path(args.resume), run / f"round-{args.rounds_done}")
    else:
        summary = fit_self_training(data, real_val, pool, run, cfg, callback=Log())
        emit("starter.train", epochs=summary["epochs"], minutes=round((time.monotonic() - t0) / 60, 1),
             pseudo_labels=(summary.get("self_training") or {}).get("kept", 0))
        first = run / "best.pt"
    if args.rounds == 1:
        return first
    last = further_rounds(data, real_val, pool, run, cfg, first, args.rounds, args.round_epochs, Log(),
                          done=args.rounds_done if args.resume else 1)
    emit("starter.rounds", rounds=args.rounds, minutes=round((time.monotonic() - t0) / 60, 1))
    return last


def package(checkpoint: Path, args) -> None:
    """Measure ``checkpoint`` on rows 801-1000 and write the folder: weights, ONNX, model card, samples."""
    real_train, real_val = real_split()
    rec = Recognizer(checkpoint)
    labels, reviewed = [s.label for s in real_val], [s.label for s in corrected(real_val)]
    figures = {}
    for name, config in (("greedy", DecoderConfig()), ("beam20+names LM", DecoderConfig(lm="names"))):
        preds = rec.read([s.path for s in real_val], rec.decoder(config))
        texts = [p.text for p in preds]
        figures[name] = (round(exact_match(labels, texts), 4), round(cer(labels, texts), 4), preds)
        emit("starter.eval", decoder=name, exact_match=figures[name][0], cer=figures[name][1], n=len(real_val),
             reviewed_exact_match=round(exact_match(reviewed, texts), 4), reviewed_cer=round(cer(reviewed, texts), 4))
    exact, error, preds = figures["beam20+names LM"]
    samples = [{"file": s.path.name, "label": s.label, "prediction": p.text, "confidence": round(p.confidence, 4)}
               for s, p in list(zip(real_val, preds))[:12]]
    evaluation = Evaluation(exact_match=exact, cer=error, n=len(real_val), split="validation",
                            dataset="real Kaggle validation rows 801-1000", decoder="beam 20 + the names LM "
                            f"(greedy: exact match {figures['greedy'][0]:.3f}, CER {figures['greedy'][1]:.3f})",
                            dataset_id="landlord/handwriting-recognition", samples=samples)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    export(checkpoint, out, formats=["safetensors", "onnx"])  # model.onnx: what a CPU reads it with (ocr.engines)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    (out / "README.md").write_text(model_card(config, "hwr-ocr/starter", evaluation,
                                              datasets=["landlord/handwriting-recognition"], about=about(config, args,
                                                                                                          len(real_train)),
                                              onnx=True), encoding="utf-8")
    (out / SAMPLES).write_text(json.dumps(samples, indent=1, ensure_ascii=False), encoding="utf-8")
    emit("starter", folder=str(out), exact_match=exact, cer=error, greedy_exact_match=figures["greedy"][0],
         greedy_cer=figures["greedy"][1], bytes=sum(p.stat().st_size for p in out.iterdir()))


def about(config: dict, args, n_real: int) -> str:
    """The model card's account of how the model was made (the rebuild command as it was run)."""
    kept = ((config.get("provenance") or {}).get("self_training") or {}).get("kept", 0)
    command = "python -m bench.starter" + (f" --epochs {args.epochs}" if args.epochs else "")
    rounds = ""
    if args.rounds > 1:
        command += f" --rounds {args.rounds} --round-epochs {args.round_epochs}"
        more = "a second self-training round" if args.rounds == 2 else f"{args.rounds - 1} more self-training rounds"
        rounds = ROUNDS.format(more=more, kept=kept, epochs=args.round_epochs)
    return ABOUT.format(budget=budget(args), n_real=n_real, rounds=rounds, command=command,
                        first_kept="" if rounds else f" ({kept:,} pseudo-labels kept)",
                        picked=PICKED_LAST if args.rounds > 1 else PICKED_BEST)


if __name__ == "__main__":
    main()
