"""What one run over several processes costs on a CPU: 2 gloo ranks x 1 thread against 1 process x 2 threads, side by
side in one run, the same data (synthetic default data + real rows 1-800) and the same wall-clock budget, scored on
real rows 801-1000 (greedy). Each side runs in its own process (the ranks under torchrun), started by this script.

    python -m bench.distributed [--minutes 3] [--synth 20000] [--batch-size 32]

Prints one JSON line per side (training images/s over all ranks: the median step rate of rank 0 times the ranks;
epochs; best exact match and CER) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from bench.common import CACHE, ROOT, emit

SIDES = {"1 process x 2 threads": (1, 2), "2 gloo ranks x 1 thread": (2, 1)}


def train_one_side(args) -> None:
    """A child: ``fit`` on the benchmark's data; under torchrun each process is a rank of the run."""
    from bench.common import real_split, synthetic
    from ocr.data.datasets import import_kaggle
    from ocr.training.distributed import Ranks, end
    from ocr.training.loop import TrainConfig, fit

    synth = import_kaggle(synthetic(args.synth)).samples
    real_train, real_val = real_split()
    cfg = TrainConfig(epochs=1000, max_minutes=args.minutes, batch_size=args.batch_size, device="cpu", log_every=10,
                      seed=0)
    try:
        fit(synth + real_train * 5, real_val, args.out, cfg, progress=False)
    finally:
        end(Ranks.from_env())


def run_side(name: str, ranks: int, threads: int, args) -> dict:
    out = CACHE / f"distributed-{ranks}x{threads}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, not a resume
    child = ["-m", "bench.distributed", "--child", "--out", str(out), "--minutes", str(args.minutes),
             "--synth", str(args.synth), "--batch-size", str(args.batch_size)]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if ranks > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, *launcher, *child], cwd=ROOT, env=env, check=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = sorted(r["samples_per_s"] for r in records if r["type"] == "step")
    epochs = [r for r in records if r["type"] == "epoch"]
    best = min(epochs, key=lambda r: r["val_cer"])
    return {"side": name, "ranks": ranks, "threads_per_rank": threads,
            "images_per_s": round(rates[len(rates) // 2] * ranks, 1), "epochs": len(epochs),
            "exact_match": round(best["val_exact_match"], 4), "cer": round(best["val_cer"], 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget of each side")
    ap.add_argument("--synth", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=32, help="per rank (the 2-rank run's batch is twice as large)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        train_one_side(args)
        return
    results = [run_side(name, ranks, threads, args) for name, (ranks, threads) in SIDES.items()]
    for r in results:
        emit("distributed", minutes=args.minutes, batch_size_per_rank=args.batch_size, **r)
    one, two = results
    emit("distributed.ratio", two_ranks_over_one_process=round(two["images_per_s"] / one["images_per_s"], 3),
         cer_difference=round(two["cer"] - one["cer"], 4))


if __name__ == "__main__":
    main()
