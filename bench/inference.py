"""Inference speed on CPU, end to end: JPEG file -> decode -> preprocess -> CRNN -> greedy text.

    python -m bench.inference [--checkpoint CKPT] [--preset small] [--threads 2]
Batch-64 throughput over the real validation images, and single-image latency p50/p95.
Without a checkpoint a freshly initialised model of the preset is timed (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.common import REAL, emit
from ocr.alphabet import Alphabet
from ocr.checkpoint import save_checkpoint
from ocr.model import CRNN, preset
from ocr.recognize import Recognizer


def fresh_checkpoint(name: str, folder: str) -> Path:
    alphabet = Alphabet()
    model = CRNN(preset(name, alphabet.num_classes))
    path = Path(folder) / f"{name}.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": model.cfg.to_dict(), "alphabet": alphabet.chars,
                           "preprocess": {"height": model.cfg.height, "max_width": 256}})
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=15)
    ap.add_argument("--singles", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted((REAL / "validation_v2" / "validation").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no real images under {REAL}")
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recognizer(args.checkpoint or fresh_checkpoint(args.preset, tmp))
    pool = ThreadPoolExecutor(args.threads)  # JPEG decoding and resizing release the GIL

    def read_batch(batch):
        arrays = list(pool.map(rec.prepare, batch))
        return rec.read_prepared(arrays)

    read_batch(files[:64])  # warm-up
    n, t = 0, time.perf_counter()
    for b in range(args.batches):
        batch = files[(b * 64) % (len(files) - 64):][:64]
        n += len(read_batch(batch))
    batch_rate = n / (time.perf_counter() - t)

    latencies = []
    for i in range(args.singles):
        t = time.perf_counter()
        rec.read([files[i % len(files)]])
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    emit("inference", model=rec.model.cfg.describe(), preset=args.preset if not args.checkpoint else "checkpoint",
         images_per_s_batch64=round(batch_rate), single_p50_ms=round(statistics.median(latencies), 2),
         single_p95_ms=round(latencies[int(0.95 * len(latencies)) - 1], 2), preprocess=str(rec.preprocess_config))


if __name__ == "__main__":
    main()
