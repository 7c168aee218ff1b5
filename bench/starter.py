"""The starter model that ships with the project (``ocr/sharing/starter/``: model.safetensors, config.json, README.md model
card), rebuilt by one command with the project's best CPU recipe (the accuracy row of README):

    python -m bench.starter [--minutes 28] [--checkpoint CKPT]

Trained on the embedded default data (20,000 synthetic names, seed 0) plus the real Kaggle rows 1-800 of the shared
sample (each seen 10 times an epoch), self-training on its 10,500 unlabelled real crops (``TrainConfig.self_train``
0.35, pseudo-labels read with beam 20 + the names LM at P >= 0.5); the checkpoint is picked on, and the card's figures
measured on, the real rows 801-1000, which it never trains on. ``--checkpoint`` packages a model already trained
(``--minutes``: its budget, for the card). A fresh database registers the folder as its default model
(``db.registry.register_shipped_model``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from bench.common import CACHE, REAL, emit, real_split, synthetic
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

ABOUT = ("The starter model of the project: trained {minutes:g} CPU-minutes on the embedded synthetic names "
         "(20,000, `ocr synth`, seed 0) plus {n_real} real labelled crops of the Kaggle "
         "`landlord/handwriting-recognition` forms (validation CSV rows 1-800), self-training on 10,500 unlabelled "
         "real crops of the same forms ({kept:,} pseudo-labels kept): a teacher for 65 % of the time, then a student "
         "from it on labels + pseudo-labels. The checkpoint was picked by its greedy CER on the real rows 801-1000, "
         "which it never trained on and which the figures below are measured on. Rebuild it with "
         "`python -m bench.starter`.")


class Log(Callback):
    def on_epoch(self, m):
        emit("starter.epoch", epoch=m["epoch"], val_exact_match=round(m["val_exact_match"], 4),
             val_cer=round(m["val_cer"], 4))

    def on_message(self, text):
        print(text, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=28.0)
    ap.add_argument("--real-repeat", type=int, default=10)
    ap.add_argument("--checkpoint", help="package this checkpoint instead of training")
    ap.add_argument("--out", default=str(STARTER))
    args = ap.parse_args()
    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA)")
    real_train, real_val = real_split()
    run = Path(args.checkpoint).parent if args.checkpoint else CACHE / f"starter-{args.minutes:g}min"
    if not args.checkpoint:
        t0 = time.monotonic()
        synth = import_kaggle(synthetic(20000)).samples
        cfg = TrainConfig(epochs=1000, max_minutes=args.minutes, self_train=SELF_TRAIN_SHARE,
                          pseudo_lm="names")
        shutil.rmtree(run, ignore_errors=True)
        summary = fit_self_training(synth + real_train * args.real_repeat, real_val,
                                    pool_files(REAL / "unlabelled"), run, cfg, callback=Log())
        emit("starter.train", epochs=summary["epochs"], minutes=round((time.monotonic() - t0) / 60, 1),
             pseudo_labels=(summary.get("self_training") or {}).get("kept", 0))
    checkpoint = Path(args.checkpoint) if args.checkpoint else run / "best.pt"
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
    import json

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    kept = ((config.get("provenance") or {}).get("self_training") or {}).get("kept", 0)
    about = ABOUT.format(minutes=args.minutes, n_real=len(real_train), kept=kept)
    (out / "README.md").write_text(model_card(config, "hwr-ocr/starter", evaluation,
                                              datasets=["landlord/handwriting-recognition"], about=about, onnx=True),
                                   encoding="utf-8")
    (out / SAMPLES).write_text(json.dumps(samples, indent=1, ensure_ascii=False), encoding="utf-8")
    emit("starter", folder=str(out), exact_match=exact, cer=error, greedy_exact_match=figures["greedy"][0],
         greedy_cer=figures["greedy"][1], bytes=sum(p.stat().st_size for p in out.iterdir()))


if __name__ == "__main__":
    main()
