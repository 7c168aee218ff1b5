"""What a label buys: accuracy against the number of labels a person gave, for active versus random choice of what to
label, with and without self-training on the images still unlabelled.

    python -m bench.label_value [--sizes 50,100,200,400,all] [--minutes 1.5] [--extra-pool 2000] [--seed 0] [--warm-start]

A simulated annotator: the ~800 real labelled training rows (CSV rows 1-800) are the pool, and the true label of an
image is revealed when it is asked for; the other ~200 real rows are the fixed validation set, never used for any
choice. Every round starts from the same model trained on synthetic data only (``bench.label_errors.base_model``) and
gets the same budget (``--minutes`` of training, reading the pool for pseudo-labels included), on a fixed synthetic
share plus the labels so far (checkpoint picked on held-out synthetic images). Arms:

- random: the first n images of a seeded shuffle of the pool;
- active: the previous round's model reads the images still unlabelled (beam 20 + names LM, as Label next does) and
  ``ocr.curation.acquire.acquisition_order`` picks the next ones (margin of the top two readings, diversity by reading and
  image embedding), the first round with the synthetic model;
- +self-training: the same, trained with the product's option (``TrainConfig.self_train``) on the pool images still
  unlabelled plus ``--extra-pool`` of the 10,500 unlabelled real images: a teacher trained first in the round reads
  them;
- active+loop-self-training: as a labelling loop runs it, the previous round's model (the one that chose the labels)
  is the teacher (``fit_self_training(teacher=...)``): it reads the same images inside the round's budget, and the
  whole rest of the budget trains the student from the same synthetic model.

``--warm-start`` runs every arm as the product's loop does (Label next's "Retrain with new labels",
``jobs.queue.submit_retrain``): from its second round on, a round fine-tunes the arm's previous model (at the retrain
LR) instead of starting again from the synthetic one; a round still gets ``--minutes`` (runs and results in
``.../4min-warm/`` for 4-minute rounds).

Each round prints a JSON line (exact match and CER on the validation rows with the default ``--lm names`` decoder);
results go to ``data/bench/label-value/results.jsonl`` (``.../seed-N/`` for another ``--seed``, ``.../4min/`` for
another ``--minutes``, ``.../4min-warm/`` with ``--warm-start``; a rerun skips rounds already there) and the plot to
``data/bench/label-value/label_value.html`` / ``.png`` (``--plot-only`` redraws it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import CACHE, REAL, emit, real_split, synthetic
from bench.label_errors import Quiet, base_model
from jobs.queue import RETRAIN
from ocr.curation.acquire import PoolImage, acquisition_order
from ocr.data.datasets import Sample, csv_path, import_kaggle
from ocr.decoding.decoder import DecoderConfig
from ocr.recognize import Recognizer
from ocr.training.loop import TrainConfig
from ocr.training.selftrain import fit_self_training, pool_files

OUT = CACHE / "label-value"
ARMS = ("random", "active", "random+self-training", "active+self-training", "active+loop-self-training")


def read(checkpoint: str | Path, samples: list[Sample]) -> list:
    """``Recognizer.score`` over samples with the default ``--lm names`` decoder (as the predict job reads a pool)."""
    rec = Recognizer(checkpoint)
    return rec.score_files([s.path for s in samples], decoder=rec.decoder(DecoderConfig(lm="names")))


def evaluate(checkpoint: str | Path, val: list[Sample]) -> dict:
    from ocr.evaluation.metrics import cer, exact_match

    texts = [r.text for r in read(checkpoint, val)]
    labels = [s.label for s in val]
    return {"exact_match": round(exact_match(labels, texts), 4), "cer": round(cer(labels, texts), 4)}


def training_set(synth: list[Sample], labelled: list[Sample], real_share: float) -> list[Sample]:
    """The synthetic share plus the labels, repeated so that they are ``real_share`` of an epoch whatever their count:
    every round sees as many real images per minute."""
    repeat = max(1, round(len(synth) * real_share / (1 - real_share) / len(labelled)))
    return synth + labelled * repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="50,100,200,400,all")
    ap.add_argument("--minutes", type=float, default=1.5, help="training budget of every round")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--synth-share", type=int, default=3000, help="synthetic images in every round's training set")
    ap.add_argument("--real-share", type=float, default=0.5, help="share of an epoch that is real labelled images")
    ap.add_argument("--extra-pool", type=int, default=2000, help="unlabelled real images for self-training")
    ap.add_argument("--self-train", type=float, default=0.35)
    ap.add_argument("--threshold", type=float, default=0.5, help="pseudo-label threshold")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--base-minutes", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm-start", action="store_true",
                    help="a round fine-tunes the arm's previous model, as Retrain with new labels does")
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    out = run_folder(args.seed, args.minutes, args.warm_start)
    results = out / "results.jsonl"
    if args.plot_only:
        plot(results, args.minutes, args.warm_start)
        return
    if not csv_path(REAL, "validation").exists():
        sys.exit(f"real data not found at {REAL} (set HWR_REAL_DATA)")
    out.mkdir(parents=True, exist_ok=True)
    pool, val = real_split()
    sizes = [len(pool) if s == "all" else int(s) for s in args.sizes.split(",")]
    base = base_model(args.base_minutes, 20000)
    synth_all = import_kaggle(synthetic(20000)).samples
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(synth_all), size=args.synth_share + 300, replace=False)
    synth, synth_val = [synth_all[i] for i in picks[:args.synth_share]], [synth_all[i] for i in picks[args.synth_share:]]
    extra = pool_files(REAL / "unlabelled")[:args.extra_pool]
    order = [pool[i] for i in np.random.default_rng(args.seed).permutation(len(pool))]
    done = {(r["arm"], r["labels"]): r for r in map(json.loads, results.read_text().splitlines())} \
        if results.exists() else {}
    emit("label_value.data", pool=len(pool), validation=len(val), extra_pool=len(extra), sizes=sizes,
         minutes_per_round=args.minutes, base=base, warm_start=args.warm_start)

    if ("synthetic only", 0) not in done:
        done[("synthetic only", 0)] = {"arm": "synthetic only", "labels": 0, **evaluate(base, val), "n_val": len(val)}
        _append(results, done[("synthetic only", 0)])
    emit("label_value.round", **done[("synthetic only", 0)])
    for arm in args.arms.split(","):
        self_train = arm.endswith("self-training")
        labelled: list[Sample] = []
        model = base
        for n in sizes:
            if arm.startswith("active") and n < len(pool):
                chosen = {s.path for s in labelled}
                rest = [s for s in pool if s.path not in chosen]
                readings = read(model, rest)
                items = [PoolImage(i, r.text, float(np.exp(r.log_prob)), r.margin, r.embedding)
                         for i, r in enumerate(readings)]
                labelled += [rest[p.key] for p in acquisition_order(items, n - len(labelled))]
            else:
                labelled = order[:n]
            key = (arm, n)
            # the whole pool: the same labels whichever arm chose them (a cold start only: warm, the models differ)
            shared = ("random+self-training" if self_train else "random") \
                if n >= len(pool) and not args.warm_start else arm
            run = out / f"{shared}-{n}"
            if key not in done and (shared, n) in done:
                done[key] = {**done[(shared, n)], "arm": arm}
                _append(results, done[key])
            if key in done:
                model = str(run / "best.pt")
                emit("label_value.round", **done[key], cached=True)
                continue
            t0 = time.monotonic()
            labelled_paths = {s.path for s in labelled}
            unlabelled = [s.path for s in pool if s.path not in labelled_paths] + extra if self_train else []
            warm = args.warm_start and model != base
            cfg = TrainConfig(epochs=1000, max_minutes=args.minutes, lr=RETRAIN["lr"] if warm else args.lr,
                              seed=args.seed, log_every=50, self_train=args.self_train if self_train else 0.0,
                              pseudo_threshold=args.threshold)
            shutil.rmtree(run, ignore_errors=True)
            summary = fit_self_training(training_set(synth, labelled, args.real_share), synth_val, unlabelled, run,
                                        cfg, init=model if warm else base, callback=Quiet(),
                                        teacher=model if arm == "active+loop-self-training" else None)
            model = str(run / "best.pt")
            record = {"arm": arm, "labels": n, **evaluate(model, val), "n_val": len(val),
                      "pseudo_labels": (summary.get("self_training") or {}).get("kept", 0),
                      "epochs": summary["epochs"], "minutes": round((time.monotonic() - t0) / 60, 2)}
            done[key] = record
            _append(results, record)
            emit("label_value.round", **record)
    plot(results, args.minutes, args.warm_start)


def run_folder(seed: int, minutes: float, warm_start: bool = False) -> Path:
    """Another seed (another pick order), another round budget or warm starts keep their own runs and results."""
    out = OUT if minutes == 1.5 and not warm_start else OUT / f"{minutes:g}min{'-warm' if warm_start else ''}"
    return out if seed == 0 else out / f"seed-{seed}"


def _append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def plot(results: Path, minutes: float = 1.5, warm_start: bool = False) -> None:
    """Exact match against labels, one line per arm: ``label_value.html`` and, where kaleido can render, a PNG."""
    import plotly.graph_objects as go

    rows = [json.loads(line) for line in results.read_text().splitlines()]
    fig = go.Figure()
    for arm in ARMS:
        points = sorted((r["labels"], r["exact_match"]) for r in rows if r["arm"] == arm)
        if points:
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                                     name=arm, line={"dash": "dot" if arm.startswith("random") else "solid"}))
    start = [r for r in rows if r["arm"] == "synthetic only"]
    if start:
        fig.add_hline(y=start[0]["exact_match"], line={"color": "grey", "width": 1},
                      annotation_text="no labels (the synthetic model)", annotation_position="bottom right")
    sizes = sorted({r["labels"] for r in rows if r["labels"] > 0})
    n_val = rows[0].get("n_val", 199)
    loop = ", each round fine-tunes the last" if warm_start else ""
    fig.update_layout(title=f"What a label buys: real Kaggle names, {n_val} held-out rows, {minutes:g} CPU-min per round"
                            f"{loop}",
                      xaxis={"title": "labels given (log scale)", "type": "log", "tickvals": sizes,
                             "ticktext": [str(n) for n in sizes]},
                      yaxis={"title": "exact match (beam 20 + names LM)"}, width=760, height=460,
                      template="plotly_white")
    fig.write_html(results.parent / "label_value.html", include_plotlyjs="cdn")
    try:
        fig.write_image(results.parent / "label_value.png", scale=2)
    except Exception as exc:  # kaleido needs a Chrome; the HTML is the plot anyway
        print(f"no PNG ({exc.__class__.__name__}: {exc})", file=sys.stderr)
    emit("label_value.plot", html=str(results.parent / "label_value.html"))


if __name__ == "__main__":
    main()
