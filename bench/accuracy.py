"""Accuracy on real data: train on the synthetic default data + the first 800 labelled real rows of
../shared/data/kaggle-names, validate on the other 200 rows, within a time budget.

    python -m bench.accuracy [--minutes 27] [--real-repeat 5] [--device auto]
Prints JSON lines; the last one has exact_match and cer on the held-out real images.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.common import CACHE, REAL, emit, synthetic
from ocr.datasets import csv_path, import_kaggle
from ocr.train import Callback, TrainConfig, fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=27.0, help="training budget (data generation comes on top)")
    ap.add_argument("--real-repeat", type=int, default=5, help="times each real training image is seen per epoch")
    ap.add_argument("--synth", type=int, default=20000)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", default=str(CACHE / "accuracy-run"))
    args = ap.parse_args()
    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA)")
    t0 = time.monotonic()
    synth = import_kaggle(synthetic(args.synth)).samples
    real = import_kaggle(REAL, ("validation",))
    order = {s.path.name: i for i, s in enumerate(real.samples)}
    rows = sorted(real.samples, key=lambda s: order[s.path.name])
    # rows 1-800 of the CSV train, rows 801-1000 validate (unusable rows are dropped from each part)
    cut = "VALIDATION_0800.jpg"
    real_train = [s for s in rows if s.path.name <= cut]
    real_val = [s for s in rows if s.path.name > cut]
    emit("accuracy.data", synthetic=len(synth), real_train=len(real_train), real_val=len(real_val),
         prepare_s=round(time.monotonic() - t0, 1))

    class Log(Callback):
        def on_epoch(self, m):
            emit("accuracy.epoch", epoch=m["epoch"], train_loss=round(m["train_loss"], 4),
                 val_exact_match=round(m["val_exact_match"], 4), val_cer=round(m["val_cer"], 4),
                 seconds=round(m["seconds"], 1))

        def on_message(self, text):
            print(text, file=sys.stderr, flush=True)

    cfg = TrainConfig(preset=args.preset, epochs=1000, max_minutes=args.minutes, device=args.device, lr=args.lr)
    summary = fit(synth + real_train * args.real_repeat, real_val, args.out, cfg, callback=Log(), progress=False)
    best = summary["best"]
    emit("accuracy", exact_match=round(best["val_exact_match"], 4), cer=round(best["val_cer"], 4),
         n=best["n_val"], epochs=summary["epochs"], device=summary["device"], preset=args.preset,
         minutes_total=round((time.monotonic() - t0) / 60, 1), checkpoint=f"{args.out}/best.pt")


if __name__ == "__main__":
    main()
