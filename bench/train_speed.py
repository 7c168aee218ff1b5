"""Training speed of the presets against the textbook CRNN (~3.6 M parameters, 64x256 input, like the
public Kaggle notebooks), side by side in one run, each given the same wall-clock budget on the same
data (synthetic default data + the first 800 real rows), then scored on the other 200 real rows.

    python -m bench.train_speed [--minutes 8] [--presets small,textbook] [--data-path loader|device|both]
                                [--precision auto|fp32|bf16] [--device cpu|cuda]

``--data-path both`` trains each preset once per data path (batches built and augmented by DataLoader workers on the
CPU, and on the training device; the same batches, see ``ocr.data.batches``) on the same data and budget, to compare them
on this machine.
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench.common import CACHE, emit, real_split, synthetic
from ocr.data.datasets import import_kaggle
from ocr.training.loop import Callback, TrainConfig, fit


class Speed(Callback):
    def __init__(self, name: str, rates: list[float]):
        self.name, self.rates = name, rates

    def on_step(self, m):
        self.rates.append(m["samples_per_s"])

    def on_message(self, text):
        print(f"[{self.name}] {text}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget per model")
    ap.add_argument("--presets", default="small,textbook")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--synth", type=int, default=20000)
    ap.add_argument("--data-path", default="default", choices=["default", "loader", "device", "both"],
                    help="default: on the device on CUDA, the DataLoader elsewhere")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    paths = {"default": [None], "loader": [False], "device": [True], "both": [False, True]}[args.data_path]
    synth = import_kaggle(synthetic(args.synth)).samples
    real_train, real_val = real_split()
    results = {}
    for name, on_device in ((n, p) for n in args.presets.split(",") for p in paths):
        rates: list[float] = []
        torch.manual_seed(0)
        cfg = TrainConfig(preset=name, epochs=1000, max_minutes=args.minutes, device=args.device, log_every=10,
                          data_on_device=on_device, precision=args.precision)
        run_dir = CACHE / f"train-speed-{name}-{'default' if on_device is None else 'device' if on_device else 'loader'}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)  # a fresh run, not a resume of metrics from an earlier one
        summary = fit(synth + real_train * 5, real_val, run_dir, cfg, callback=Speed(name, rates), progress=False)
        steady = sorted(rates)[len(rates) // 2] if rates else float("nan")  # median: robust to the odd slow window
        results[name] = steady
        best = summary["best"]
        emit("train_speed", preset=name, model=summary["model"], parameters=summary["parameters"],
             samples_per_s=round(steady, 1), minutes=args.minutes, epochs=summary["epochs"],
             exact_match=round(best.get("val_exact_match", 0), 4), cer=round(best.get("val_cer", 1), 4),
             device=summary["device"], data_on_device=summary["data_on_device"], precision=summary["precision"])
        results[f"{name}-{'device' if summary['data_on_device'] else 'loader'}"] = steady
    for name in args.presets.split(","):
        if f"{name}-device" in results and f"{name}-loader" in results:
            emit("train_speed.data_paths", preset=name,
                 device_over_loader=round(results[f"{name}-device"] / results[f"{name}-loader"], 3))
    if "small" in results and "textbook" in results:
        emit("train_speed.ratio", small_over_textbook=round(results["small"] / results["textbook"], 1))


if __name__ == "__main__":
    main()
