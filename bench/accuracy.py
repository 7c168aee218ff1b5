"""Accuracy on real data: train on the synthetic default data + the first 800 labelled real rows of
../shared/data/kaggle-names, validate on the other 200 rows, within a time budget.

    python -m bench.accuracy [--minutes 27] [--real-repeat 5] [--device auto] [--self-train 0.4]
Prints JSON lines; the last one has exact_match and cer on the held-out real images, read with the default decoder
of ``--lm names`` (beam search with the character language model of names), and the model's own greedy figures. Each
decoder's line also scores against the reviewed labels (``reviewed_*``: the 17 of the 199 labels a person found wrong
set right, ``bench.reviewed``).

The last lines decode the held-out images again: beam search, the names lexicon (``ocr.decoding.lexicon``) and beam search with
the character language model of names (``ocr.decoding.charlm``) at several weights; the very last line is the default of
``python -m ocr evaluate --lm names``. ``--checkpoint CKPT`` skips training and only evaluates.

With ``--self-train F`` the last fraction F of the budget fine-tunes on the 10,500 unlabelled real images too,
labelled by the first model where it is confident: the product's self-training option (``ocr.training.selftrain``, the same as
``ocr train --self-train F --unlabelled DIR``), pseudo-labels read with ``--pseudo-decoder``; the held-out 200 are
never used for them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from bench.common import CACHE, REAL, emit, real_split, synthetic
from bench.reviewed import corrected
from ocr.data.datasets import Sample, csv_path, import_kaggle
from ocr.decoding.charlm import CharLM
from ocr.decoding.decoder import DecoderConfig
from ocr.recognize import Recognizer
from ocr.training.loop import Callback, TrainConfig
from ocr.training.selftrain import fit_self_training, pool_files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=27.0, help="training budget (data generation comes on top)")
    ap.add_argument("--real-repeat", type=int, default=5, help="times each real training image is seen per epoch")
    ap.add_argument("--synth", type=int, default=20000)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", default=str(CACHE / "accuracy-run"))
    ap.add_argument("--self-train", type=float, default=0.0, help="share of the budget for pseudo-label fine-tuning")
    ap.add_argument("--min-confidence", type=float, default=0.9)
    ap.add_argument("--pseudo-decoder", choices=("greedy", "lm"), default="lm",
                    help="how the unlabelled images are read for pseudo-labels (lm: beam 20 + names LM)")
    ap.add_argument("--checkpoint", help="evaluate this checkpoint instead of training")
    args = ap.parse_args()
    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA)")
    if args.checkpoint:
        emit("accuracy", **decode_variants(args.checkpoint, real_split()[1]), checkpoint=args.checkpoint)
        return
    t0 = time.monotonic()
    synth = import_kaggle(synthetic(args.synth)).samples
    real_train, real_val = real_split()
    emit("accuracy.data", synthetic=len(synth), real_train=len(real_train), real_val=len(real_val),
         prepare_s=round(time.monotonic() - t0, 1))

    class Log(Callback):
        def on_epoch(self, m):
            emit("accuracy.epoch", epoch=m["epoch"], train_loss=round(m["train_loss"], 4),
                 val_exact_match=round(m["val_exact_match"], 4), val_cer=round(m["val_cer"], 4),
                 seconds=round(m["seconds"], 1))

        def on_message(self, text):
            print(text, file=sys.stderr, flush=True)

    cfg = TrainConfig(preset=args.preset, epochs=1000, max_minutes=args.minutes, device=args.device, lr=args.lr,
                      self_train=args.self_train, pseudo_threshold=args.min_confidence,
                      pseudo_lm="names" if args.pseudo_decoder == "lm" else None)
    pool = pool_files(REAL / "unlabelled") if args.self_train > 0 else []
    shutil.rmtree(args.out, ignore_errors=True)  # a fresh run, not a resume of an earlier one
    summary = fit_self_training(synth + real_train * args.real_repeat, real_val, pool, args.out, cfg, callback=Log())
    if summary.get("self_training"):
        st = summary["self_training"]
        emit("accuracy.pseudo_labels", kept=st["kept"], read=st["read"], seconds=st["seconds"],
             first_cer=round(st["teacher_val_cer"], 4))
    best = summary["best"]
    minutes = round((time.monotonic() - t0) / 60, 1)
    fused = decode_variants(f"{args.out}/best.pt", real_val)
    emit("accuracy", exact_match=fused["exact_match"], cer=fused["cer"], decoder=fused["decoder"],
         greedy_exact_match=round(best["val_exact_match"], 4), greedy_cer=round(best["val_cer"], 4),
         n=best["n_val"], epochs=summary["epochs"], device=summary["device"], preset=args.preset,
         minutes_total=minutes, checkpoint=f"{args.out}/best.pt")


def decode_variants(checkpoint: str, val: list[Sample]) -> dict:
    """Greedy, beam 10, the names lexicon, beam 20 + the names character LM (``ocr.decoding.charlm``) at several weights, its
    weight chosen by 2-fold cross-validation, on the held-out real images: each a ``DecoderConfig``, as the product
    decodes. The last line is the default decoder of ``--lm names``."""
    from ocr.decoding.decoder import Decoder
    from ocr.decoding.lexicon import Lexicon
    from ocr.evaluation.metrics import cer, exact_match

    rec = Recognizer(checkpoint)
    labels, reviewed = [s.label for s in val], [s.label for s in corrected(val)]
    logits, lengths = rec.logits([rec.prepare(s.path) for s in val])

    def read(config: DecoderConfig) -> list[str]:
        return [p.text for p in Decoder(config, rec.alphabet)(logits, lengths)]

    def report(decoder: str, texts: list[str], **extra) -> dict:
        figures = {"decoder": decoder, "exact_match": round(exact_match(labels, texts), 4),
                   "cer": round(cer(labels, texts), 4), "n": len(val),
                   "reviewed_exact_match": round(exact_match(reviewed, texts), 4),
                   "reviewed_cer": round(cer(reviewed, texts), 4)}
        emit("accuracy.decode", **figures, **extra)
        return figures

    for config in (DecoderConfig(), DecoderConfig(beam=10)):
        report(config.describe(), read(config))
    lex = Lexicon.names(rec.alphabet)
    report(DecoderConfig(lexicon="names").describe(), read(DecoderConfig(lexicon="names")), lexicon_size=len(lex),
           labels_in_lexicon=round(sum(t in lex for t in labels) / len(labels), 3))
    t0 = time.monotonic()
    lm = CharLM.names(rec.alphabet)
    emit("accuracy.charlm", order=lm.order, words=lm.n_words, load_s=round(time.monotonic() - t0, 1))
    fused: dict[float, list[str]] = {}
    for weight in (0.3, 0.45, 0.6, 0.8, 1.0):
        config = DecoderConfig(lm="names", lm_weight=weight)
        t0 = time.monotonic()
        fused[weight] = read(config)
        report(config.describe(), fused[weight], ms_per_image=round(1000 * (time.monotonic() - t0) / len(val), 2))
    # the weight chosen on one half, scored on the other: what tuning on these images is worth
    halves = [list(range(0, len(val), 2)), list(range(1, len(val), 2))]
    cv = [""] * len(val)
    chosen = []
    for tune, score in (halves, halves[::-1]):
        w = max(fused, key=lambda w: exact_match([labels[i] for i in tune], [fused[w][i] for i in tune]))
        chosen.append(w)
        for i in score:
            cv[i] = fused[w][i]
    report("beam20+names LM, weight by 2-fold cross-validation", cv, weights=chosen)
    default = DecoderConfig(lm="names")
    return report(f"{default.describe()} (default of --lm names)", read(default))


if __name__ == "__main__":
    main()
