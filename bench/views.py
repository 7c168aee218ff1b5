"""Test-time augmentation on real handwriting (``DecoderConfig.views``, ``ocr.recognize.read_views``): one model read
with 1, 3, 5 and 7 views of each image (moved up and down by up to 3 rows of its input, the log-probabilities
averaged), greedy and with the names LM, paired on the same images, and what the views cost in reading speed.

    python -m bench.views [--checkpoint ocr/sharing/starter] [--kfold RUN] [--views 1,3,5,7]

``--checkpoint``: the model reads the real rows 801-1000 (which the starter never trained on), then its reading speed
at each number of views is timed over the 1,000 real crops (``Recognizer.read``, file -> greedy text, best of 3).
``--kfold RUN``: each finished fold of a ``bench.kfold`` run (``RUN/fold-K``, its last round's model) reads its own
test fold, and the mean over those folds is printed. Scored against the labels as they are and as reviewed
(``bench.reviewed``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench.common import REAL, emit, real_split
from bench.kfold import figures_of, finished
from bench.reviewed import corrected
from ocr.curation.label_errors import folds_of
from ocr.data.datasets import Sample, csv_path, import_kaggle
from ocr.decoding.decoder import DecoderConfig
from ocr.evaluation.metrics import cer, exact_match
from ocr.recognize import Recognizer
from ocr.sharing import STARTER


def score(checkpoint: Path, test: list[Sample], views: list[int]) -> dict:
    """Exact match and CER, greedy and with the names LM, at each number of views."""
    rec = Recognizer(checkpoint)
    paths, labels, reviewed = [s.path for s in test], [s.label for s in test], [s.label for s in corrected(test)]
    out = {}
    for n in views:
        for name, lm in (("greedy", None), ("names_lm", "names")):
            texts = [p.text for p in rec.read(paths, rec.decoder(DecoderConfig(lm=lm, views=n)))]
            out[f"{name}_{n}views"] = {"exact_match": round(exact_match(labels, texts), 4),
                                       "cer": round(cer(labels, texts), 4),
                                       "reviewed_exact_match": round(exact_match(reviewed, texts), 4)}
    return out


def speed(checkpoint: Path, views: list[int], rounds: int = 3) -> dict:
    """Images/s of ``Recognizer.read`` over the 1,000 real crops (file -> greedy text) at each number of views, the
    best of ``rounds`` reads."""
    rec = Recognizer(checkpoint)
    files = sorted((REAL / "validation_v2" / "validation").glob("*.jpg"))
    out = {}
    for n in views:
        decoder = rec.decoder(DecoderConfig(views=n))
        rec.read(files[:128], decoder)  # warm-up
        seconds = []
        for _ in range(rounds):
            t = time.perf_counter()
            rec.read(files, decoder)
            seconds.append(time.perf_counter() - t)
        out[f"{n}views_images_per_s"] = round(len(files) / min(seconds))
    return out


def kfold(run: Path, views: list[int]) -> None:
    """Each finished fold's last model on its own fold, then the mean over the folds."""
    real = import_kaggle(REAL, ("validation",)).samples
    folds = folds_of(len(real), 5, 0)
    done = []
    for k in range(5):
        if figures_of(run / f"fold-{k}") is None:
            continue
        model, _ = finished(run / f"fold-{k}")
        done.append(score(model, [real[i] for i in folds[k]], views))
        emit("views.fold", fold=k, model=str(model), **done[-1])
    if not done:
        sys.exit(f"no finished fold in {run}")
    emit("views.kfold", folds=len(done), **{f"{key}_{figure}": round(statistics.mean(d[key][figure] for d in done), 4)
                                            for key in done[0] for figure in done[0][key]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=str(STARTER), help="read the real rows 801-1000 with this model")
    ap.add_argument("--kfold", metavar="RUN", help="read each finished fold of this bench.kfold run instead")
    ap.add_argument("--views", default="1,3,5,7", help="comma-separated numbers of views (1-7)")
    args = ap.parse_args()
    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA)")
    views = [int(v) for v in args.views.split(",")]
    if args.kfold:
        kfold(Path(args.kfold), views)
    else:
        emit("views", checkpoint=args.checkpoint, **score(Path(args.checkpoint), real_split()[1], views))
        emit("views.speed", checkpoint=args.checkpoint, **speed(Path(args.checkpoint), views))


if __name__ == "__main__":
    main()
