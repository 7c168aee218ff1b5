"""``evaluate`` and ``predict``: a model reads a dataset's samples (a split, or those without a label) and one
prediction per sample is stored; an evaluation adds metrics and a report."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select

from db import catalog
from db.engine import session
from db.models import Sample
from db.registry import get_model, model_file
from db.review import store_predictions
from db.settings import Settings
from jobs.context import Count, JobContext
from jobs.params import JobKind, dataset_exists_or_coming, require
from ocr.data.datasets import SPLITS
from ocr.engines import ENGINE_HELP, ENGINES, unknown_engine

if TYPE_CHECKING:
    from ocr.decoding.decoder import DecoderConfig

def _check_reading(p: EvaluateParams | PredictParams) -> None:
    """The decoder's own rules (``DecoderConfig``: beam, views) and a known engine."""
    try:
        p.decoder()
    except ValueError as exc:
        require(False, str(exc))
    require(p.engine in ENGINES, unknown_engine(p.engine))


@dataclass(frozen=True)
class EvaluateParams:
    model: int
    dataset: str
    split: str = "validation"
    beam: int = 0  # 0: greedy
    report: bool = True
    lm: bool = False  # beam search (20 at least) with the character language model of names (ocr.decoding.charlm)
    engine: str = "auto"  # what runs the model (ocr.engines.ENGINE_HELP)
    views: int = 1  # test-time augmentation (DecoderConfig.views): each image read this many times, moved up and down

    def check(self) -> None:
        _check_reading(self)
        require(self.split in SPLITS, f"unknown split {self.split!r}; choose from {', '.join(SPLITS)}")

    def decoder(self) -> DecoderConfig:
        """Its beam (0: greedy), the names language model when ``lm``, and its views."""
        from ocr.decoding.decoder import DecoderConfig

        return DecoderConfig(beam=self.beam, lm="names" if self.lm else None, views=self.views)


@dataclass(frozen=True)
class PredictParams:
    model: int
    dataset: str
    split: str | None = None  # None: the samples without a label
    beam: int = 0
    lm: bool = False
    engine: str = "auto"
    views: int = 1

    def check(self) -> None:
        _check_reading(self)

    decoder = EvaluateParams.decoder


def _options(name: str):
    def add_options(k: argparse.ArgumentParser) -> None:
        k.add_argument("--model", type=int, required=True, metavar="MODEL_ID")
        k.add_argument("--dataset", required=True, metavar="NAME")
        k.add_argument("--split", default="validation" if name == "evaluate" else None)
        k.add_argument("--beam", type=int, default=0, help="beam width (0: greedy; 20 at least with --lm)")
        k.add_argument("--lm", action="store_true",
                       help="beam search with the character language model of names (open vocabulary)")
        k.add_argument("--engine", choices=ENGINES, default="auto", help=ENGINE_HELP)
        k.add_argument("--views", type=int, default=1, help="test-time augmentation: read each image this many times "
                                                            "(1-7), moved up and down, outputs averaged")
        if name == "evaluate":
            k.add_argument("--no-report", action="store_true", help="skip report.md/report.pdf")
    return add_options


def _from_options(args: argparse.Namespace) -> dict:
    values = {"model": args.model, "dataset": args.dataset, "split": args.split, "beam": args.beam, "lm": args.lm,
              "engine": args.engine, "views": args.views}
    return values | ({"report": not args.no_report} if hasattr(args, "no_report") else {})


def prepare(settings: Settings, p, any_path: bool, secrets: dict[str, str]):
    get_model(settings, p.model)
    dataset_exists_or_coming(settings, p.dataset)
    return p


def _record(ctx: JobContext, model_id: int, r, label: str | None, reading, labelled: bool) -> dict:
    """One stored prediction: the reading, its probability, and against a label its errors and label-error score."""
    import editdistance

    wrong = label is not None and reading.text != label
    return {
        "model_id": model_id, "sample_id": r.id, "job_id": ctx.job_id, "split": r.split,
        "text": reading.text, "text_length": len(reading.text),
        "confidence": float(np.exp(reading.log_prob)), "label": label,
        "edit_distance": editdistance.eval(reading.text, label) if label is not None else None,
        "correct": (not wrong) if label is not None else None,
        "label_log_prob": reading.label_log_prob,
        "label_error_score": reading.label_error_score if wrong else None,
        "runner_up": reading.runner_up, "margin": reading.margin,
        "embedding": reading.embedding.astype(np.float16).tobytes() if not labelled else None,  # pool only
    }


def _predict(ctx: JobContext, p: EvaluateParams | PredictParams, rows: list, labelled: bool) -> dict:
    """Reads ``rows`` as a stream of batches (``Recognizer.score_stream``: preprocessing, the model and decoding on
    every core) and stores a prediction for each; an image that cannot be read is skipped and logged. A stop request
    ends it between batches, storing nothing."""
    from ocr.recognize import Recognizer

    rec = Recognizer(model_file(ctx.settings, p.model), device=ctx.device, engine=p.engine)
    config = p.decoder()
    ctx.log(f"decoder: {config.describe()}; engine: {rec.engine.name}")

    def scorable(r) -> str | None:
        """The label to score against: a usable one the model can spell, else None (predicted, not scored)."""
        if not labelled or r.label is None or r.status != "ok" or rec.alphabet.invalid_chars(r.label):
            return None
        return r.label

    catalog.pull_images(ctx.settings, rows)  # a worker on another machine: the images come from the store
    labels = [scorable(r) for r in rows]
    with rec.decoder(config, images=len(rows)) as decoder:
        stream = rec.score_stream([ctx.settings.local(r.path) for r in rows], labels, decoder)
        records, skipped, read = [], 0, 0
        for batch in stream:
            for r, label, reading in zip(rows[read:read + len(batch)], labels[read:], batch):
                if isinstance(reading, ValueError):
                    skipped += 1
                    ctx.log(f"sample {r.id} ({r.path}) skipped: {reading}", logging.WARNING)
                else:
                    records.append(_record(ctx, p.model, r, label, reading, labelled))
            read += len(batch)
            ctx.progress(read / len(rows) * 0.95, f"read {read:,} of {len(rows):,}", Count(read, len(rows), "image"))
            if ctx.should_stop():
                stream.close()
                return {"stopped": True, "read": len(records)}
    store_predictions(ctx.settings, p.model, records)
    return {"n": len(records), "records": records, "skipped_images": skipped, "engine": rec.engine.name}


def _samples(ctx: JobContext, dataset: str, where) -> list:
    ds = catalog.dataset_id(ctx.settings, dataset)
    with session(ctx.settings) as s:
        return s.execute(select(Sample.id, Sample.path, Sample.shard, Sample.label, Sample.split, Sample.status)
                         .where(Sample.dataset_id == ds, *where).order_by(Sample.id)).all()


def _excluded(ctx: JobContext, p: EvaluateParams) -> dict:
    """The split's samples left out of the evaluation, by status."""
    with session(ctx.settings) as s:
        return dict(s.execute(
            select(Sample.status, func.count()).where(Sample.dataset_id == catalog.dataset_id(ctx.settings, p.dataset),
                                                      Sample.split == p.split, Sample.status != "ok")
            .group_by(Sample.status)).all())


def run_evaluate(ctx: JobContext) -> dict:
    """Reads every usable sample of the split, replaces this model's predictions on them, writes metrics and report."""
    from ocr.evaluation.metrics import accuracy_by_length, confusions, summarize

    p: EvaluateParams = EVALUATE.parse(ctx.params)
    rows = _samples(ctx, p.dataset, [Sample.split == p.split, Sample.status == "ok", Sample.label.is_not(None)])
    if not rows:
        raise ValueError(f"dataset {p.dataset!r} has no usable sample in split {p.split!r}")
    ctx.log(f"evaluating model {p.model} on {len(rows):,} samples of {p.dataset}:{p.split}")
    decoder = p.decoder()
    done = _predict(ctx, p, rows, True)
    if done.get("stopped"):
        return done
    scored = [r for r in done["records"] if r["label"] is not None]  # labels the model can spell
    if not scored:
        raise ValueError(f"no sample of {p.dataset}:{p.split} has a label this model can spell (every label has "
                         "characters outside the model's alphabet)")
    labels, texts = [r["label"] for r in scored], [r["text"] for r in scored]
    metrics = summarize(labels, texts) | {"excluded": _excluded(ctx, p)}
    metrics |= {"not_scored": len(done["records"]) - len(scored), "skipped_images": done["skipped_images"]}
    result = {"model": p.model, "dataset": p.dataset, "split": p.split, "decoder": decoder.describe(),
              "decoder_config": decoder.to_dict(), "engine": done["engine"], **metrics,
              "label_errors_suggested": sum(1 for r in done["records"] if r["label_error_score"] is not None
                                            and r["label_error_score"] > 0)}
    if p.report:
        result["report"] = _report(ctx, p, scored, rows, metrics, accuracy_by_length(labels, texts),
                                   confusions(labels, texts))
    ctx.log(json.dumps(result))
    return result


def _report(ctx: JobContext, p: EvaluateParams, records: list[dict], rows: list, metrics: dict, by_length,
            top_confusions) -> str:
    from ocr.checkpoint import load_checkpoint
    from ocr.evaluation.evaluate import read_history
    from ocr.evaluation.report import write_report

    out = ctx.settings.data_dir / "evals" / f"job-{ctx.job_id}"
    out.mkdir(parents=True, exist_ok=True)
    path = model_file(ctx.settings, p.model)
    ckpt = load_checkpoint(path)
    paths = {r.id: ctx.settings.local(r.path) for r in rows}
    wrong = [(paths[r["sample_id"]], r["label"], r["text"], r["confidence"]) for r in records if not r["correct"]]
    model = get_model(ctx.settings, p.model)
    write_report(out, {**metrics, "split": p.split, "data": p.dataset, "checkpoint": f"model {p.model} ({model.name})",
                       "decoder": p.decoder().describe()}, read_history(path, ckpt), by_length, top_confusions, wrong,
                 model=model.description or model.name)
    ctx.settings.push([out])
    return ctx.settings.relative(out)


def run_predict(ctx: JobContext) -> dict:
    """Reads an unlabelled pool (or a split) so a person can label it, lowest confidence first."""
    p: PredictParams = PREDICT.parse(ctx.params)
    where = [Sample.split == p.split] if p.split else [Sample.status == "unlabelled"]
    rows = _samples(ctx, p.dataset, where)
    if not rows:
        raise ValueError(f"dataset {p.dataset!r} has no sample to predict" + (f" in split {p.split!r}" if p.split else
                                                                             " without a label"))
    done = _predict(ctx, p, rows, p.split is not None)
    if done.get("stopped"):
        return done
    conf = [r["confidence"] for r in done["records"]]
    return {"model": p.model, "dataset": p.dataset, "decoder_config": p.decoder().to_dict(), "engine": done["engine"],
            "n": done["n"],
            "skipped_images": done["skipped_images"],
            "scored": sum(1 for r in done["records"] if r["label"] is not None),
            "mean_confidence": float(np.mean(conf)) if conf else None, "below_0.5": sum(1 for c in conf if c < 0.5)}


EVALUATE = JobKind("evaluate", "read a split with a model and store one prediction per sample", EvaluateParams,
                   run_evaluate, _options("evaluate"), _from_options, prepare)
PREDICT = JobKind("predict", "read the unlabelled samples of a dataset (or a split) with a model", PredictParams,
                  run_predict, _options("predict"), _from_options, prepare)
