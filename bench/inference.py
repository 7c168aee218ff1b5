"""Reading speed on a CPU, both engines in one run: JPEG file -> decode -> preprocess -> CRNN -> greedy text.

    python -m bench.inference [--checkpoint ocr/sharing/starter | --preset textbook] [--threads 2] [--rounds 3]
        [--peer-python PY]

Over the 1,000 real validation crops, for each engine (``ocr.engines``: torch, onnx):
- ``end_to_end``: ``Recognizer.read`` of the files (its threads prepare, run and decode batches of 64), images/s;
- ``model``: the model alone on the prepared arrays in the Recognizer's width groups, one thread, images/s (one
  thread: the core-seconds an image costs);
- ``parts``: what the parts allow on ``--threads`` cores, threads / (model + preprocessing core-seconds per image),
  and ``share_of_parts``, end to end as a share of it;
- single-image latency p50 / p95 (file -> text, one image at a time).
Preprocessing alone (``load_image`` + ``preprocess``, one thread) is timed once. Each figure is the best of
``--rounds`` (the machine's other work only ever slows a round). The ratio onnx / torch is printed last.
``--preset`` times a freshly initialised model of that preset instead (speed does not depend on the weights).
``--peer-python PY`` also times the issue's reference in the same run, after the engines: the Keras CRNN of the public
Kaggle notebooks (``bench/peer_keras.py``, run by an interpreter that has tensorflow-cpu, keras and opencv) over the
same files on as many threads, and prints each engine's end-to-end images/s over the peer's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import REAL, emit
from ocr.alphabet import Alphabet
from ocr.checkpoint import save_checkpoint
from ocr.model import CRNN, preset
from ocr.recognize import Recognizer, read_arrays
from ocr.sharing import STARTER


def fresh_checkpoint(name: str, folder: str) -> Path:
    alphabet = Alphabet()
    model = CRNN(preset(name, alphabet.num_classes))
    path = Path(folder) / f"{name}.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": model.cfg.to_dict(), "alphabet": alphabet.chars,
                           "preprocess": {"height": model.cfg.height, "max_width": 256}})
    return path


def best_rate(n: int, run, rounds: int) -> float:
    """Images per second of the fastest of ``rounds`` runs of ``run`` (which reads ``n`` images)."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return n / min(times)


def model_rate(rec: Recognizer, arrays: list, rounds: int) -> float:
    """The engine alone, one thread, batches of 64 in width groups (as the Recognizer runs them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the torch engine; the onnx session has one thread already
    try:
        return best_rate(len(arrays), lambda: [read_arrays(rec.engine, arrays[i:i + 64], rec.model.cfg, alone=False)
                                               for i in range(0, len(arrays), 64)], rounds)
    finally:
        torch.set_num_threads(threads)


def latency(rec: Recognizer, files: list[Path], n: int, rounds: int) -> list[tuple[float, float]]:
    """(p50, p95) in ms of each round of ``n`` single-file reads, the round with the lowest p95 first."""
    out = []
    for _ in range(rounds):
        times = []
        for i in range(n):
            t = time.perf_counter()
            rec.read([files[i % len(files)]])
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out.append((round(times[len(times) // 2], 2), round(times[int(0.95 * len(times)) - 1], 2)))
    return sorted(out, key=lambda r: r[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=str(STARTER))
    ap.add_argument("--preset", help="time a fresh model of this preset instead of --checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--singles", type=int, default=300)
    ap.add_argument("--peer-python", metavar="PY", help="also time the Keras peer (bench/peer_keras.py) with this "
                                                          "interpreter, which has tensorflow-cpu, keras and opencv")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted((REAL / "validation_v2" / "validation").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no real images under {REAL}")
    tmp = tempfile.TemporaryDirectory()
    checkpoint = fresh_checkpoint(args.preset, tmp.name) if args.preset else args.checkpoint
    readers = {name: Recognizer(checkpoint, engine=name) for name in ("torch", "onnx")}
    prep = readers["onnx"]
    prep_rate = best_rate(len(files), lambda: [prep.prepare(f) for f in files], args.rounds)
    arrays = [prep.prepare(f) for f in files]
    emit("inference.preprocess", images_per_s_one_thread=round(prep_rate), ms_per_image=round(1000 / prep_rate, 3))
    rates = {}
    for name, rec in readers.items():
        rec.read(files[:256])  # warm-up
        end_to_end = best_rate(len(files), lambda rec=rec: rec.read(files), args.rounds)
        model = model_rate(rec, arrays, args.rounds)
        parts = args.threads / (1 / model + 1 / prep_rate)
        singles = latency(rec, files, args.singles, args.rounds)
        rates[name] = end_to_end
        emit(f"inference.{name}", images_per_s=round(end_to_end), model_one_thread_images_per_s=round(model),
             parts_images_per_s=round(parts), share_of_parts=round(end_to_end / parts, 3), workers=rec.workers,
             single_p50_ms=singles[0][0], single_p95_ms=singles[0][1], single_p95_ms_rounds=[p95 for _, p95 in singles])
    emit("inference", model=prep.model.cfg.describe(), images=len(files),
         onnx_over_torch=round(rates["onnx"] / rates["torch"], 2))
    if args.peer_python:
        peer = keras_peer(args.peer_python, files, args, tmp.name)
        if peer:
            emit("inference.peer", **peer, **{f"{name}_over_peer": round(rate / peer["images_per_s"], 2)
                                              for name, rate in rates.items()})


def keras_peer(python: str, files: list[Path], args, folder: str) -> dict | None:
    """``bench/peer_keras.py``'s figures over ``files``, run by ``python``; None (and why, in one line) if it cannot."""
    listing = Path(folder) / "files.txt"
    listing.write_text("\n".join(str(f) for f in files), encoding="utf-8")
    command = [python, str(Path(__file__).with_name("peer_keras.py")), "--files", str(listing), "--threads",
               str(args.threads), "--rounds", str(args.rounds), "--singles", str(args.singles)]
    try:
        r = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"the Keras peer did not run: {exc}", file=sys.stderr)
        return None
    if r.returncode != 0:
        print(f"the Keras peer did not run: {(r.stderr.strip().splitlines() or ['no output'])[-1]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
