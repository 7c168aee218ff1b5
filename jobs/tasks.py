"""What each kind of job does, run inside the job's child process. Each task takes a ``JobContext`` (progress,
stop requests, log) and returns a JSON-safe result; the training loop only sees an ``ocr.train.Callback``."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select

from db import catalog
from db.engine import session
from db.models import Job, Sample
from db.registry import get_model, model_file, register_checkpoint
from db.review import store_label_issues, store_predictions
from db.settings import Settings
from jobs import params as P
from jobs import queue
from ocr.alphabet import LabelRules

if TYPE_CHECKING:
    from ocr.decoder import DecoderConfig

METRIC_FLUSH_S = 2.0


@dataclass
class JobContext:
    settings: Settings
    job_id: int
    params: dict
    device: str = "cpu"
    cancelled: bool = False
    _last_check: float = 0.0
    _last_progress: float = field(default=0.0)

    def log(self, text: str, level: int = logging.INFO) -> None:
        logging.getLogger("jobs.task").log(level, "job %s: %s", self.job_id, text)

    def progress(self, fraction: float, message: str | None = None, force: bool = False) -> None:
        """Stored at most every half second, so a fast loop does not hammer the database."""
        now = time.monotonic()
        if force or now - self._last_progress > 0.5:
            self._last_progress = now
            queue.set_progress(self.settings, self.job_id, fraction, message)

    def should_stop(self) -> bool:
        """Polls the cancel flag at most once a second."""
        now = time.monotonic()
        if not self.cancelled and now - self._last_check > 1.0:
            self._last_check = now
            self.cancelled = queue.cancel_requested(self.settings, self.job_id)
        return self.cancelled


def run_import(ctx: JobContext) -> dict:
    p: P.ImportParams = P.parse("import", ctx.params)

    def progress(done: int, total: int) -> None:
        ctx.progress(done / max(1, total), f"imported {done:,} of {total:,} rows")

    path = p.path
    if p.kaggle_dataset:
        from ocr.kaggle import download

        ctx.progress(0.0, f"downloading {p.kaggle_dataset} from Kaggle", force=True)
        try:
            if p.credentials:
                folder = queue.secrets_dir(ctx.settings, ctx.job_id)
                if not (folder / "kaggle.json").is_file():
                    raise ValueError("the Kaggle credentials given with this job are gone (they are deleted when a job "
                                     "ends); submit the import again with them")
                os.environ["KAGGLE_CONFIG_DIR"] = str(folder)
            path = download(p.path, p.kaggle_dataset)
        finally:
            if p.credentials:
                queue.remove_secrets(ctx.settings, ctx.job_id)
    rules = LabelRules(upper=p.upper, strip_accents=p.strip_accents, charset=p.charset)
    result = catalog.import_dataset(ctx.settings, path, p.name, p.source, rules, progress=progress,
                                    should_stop=ctx.should_stop)
    ctx.log(json.dumps({k: v for k, v in result.items() if k != "import"}))
    return result


def run_synth(ctx: JobContext) -> dict:
    from ocr.synth import generate, label_rules

    p: P.SynthParams = P.parse("synth", ctx.params)
    out = ctx.settings.data_dir / "datasets" / catalog.slug(p.name)
    n_val = p.validation if p.validation >= 0 else max(1, p.n // 20)
    total = p.n + n_val + (p.n + n_val)  # generate, then import every image
    done = 0

    def step(k: int = 1) -> None:
        nonlocal done
        done += k
        ctx.progress(done / total, f"synthesized {min(done, p.n + n_val):,} of {p.n + n_val:,} images")
        if ctx.should_stop():
            raise StopRequested

    try:
        ctx.log(f"writing {p.n:,} training and {n_val:,} validation images to {out}")
        generate(out, p.n, seed=p.seed, split="train", progress=step, kind=p.kind)
        if n_val:
            generate(out, n_val, seed=p.seed + 1_000_003, split="validation", progress=step, kind=p.kind)
    except StopRequested:
        ctx.cancelled = True
        return {"stopped": "stop requested"}

    def progress(i: int, n: int) -> None:
        ctx.progress((p.n + n_val + i) / total, f"imported {i:,} of {n:,} images")

    return catalog.import_dataset(ctx.settings, out, p.name, "synthetic", label_rules(p.kind), progress=progress,
                                  should_stop=ctx.should_stop)


class StopRequested(Exception):
    pass


class DbCallback:
    """``ocr.train.Callback`` that stores metrics, progress and checkpoints in the database. Step metrics are
    buffered and written every ~2 s, so storing them costs well under 1 % of a training step."""

    STEP_METRICS = ("train_loss", "lr", "samples_per_s")

    def __init__(self, ctx: JobContext, pool_ids: dict[Path, int] | None = None, teacher_model: int | None = None):
        self.ctx = ctx
        self.pool_ids = pool_ids or {}
        self.teacher_model = teacher_model
        self.buffer: list[dict] = []
        self.last_flush = time.monotonic()
        self.steps_per_epoch = 1
        self.planned_epochs = 1
        self.started = time.monotonic()

    def flush(self) -> None:
        rows, self.buffer = self.buffer, []
        queue.add_metrics(self.ctx.settings, self.ctx.job_id, rows)
        self.last_flush = time.monotonic()

    def on_start(self, info: dict) -> None:
        self.steps_per_epoch, self.planned_epochs = max(1, info["steps_per_epoch"]), max(1, info["epochs"])
        self.ctx.log(f"training: {json.dumps(info)}")

    def on_step(self, m: dict) -> None:
        self.planned_epochs = m.get("planned_epochs", self.planned_epochs)
        for name in self.STEP_METRICS:
            if math.isfinite(m[name]):
                self.buffer.append({"kind": "step", "step": m["step"], "epoch": m["epoch"], "name": name, "value": m[name]})
        total = self.planned_epochs * self.steps_per_epoch
        done = m["step"] / total
        if time.monotonic() - self.last_flush > METRIC_FLUSH_S:
            self.flush()
            elapsed = time.monotonic() - self.started
            eta = f", about {elapsed / max(done, 1e-9) * (1 - done) / 60:.1f} min left" if done > 0.02 else ""
            self.ctx.progress(done, f"epoch {m['epoch']}/{self.planned_epochs}, step {m['step']}, "
                                    f"loss {m['train_loss']:.3f}{eta}")

    def on_epoch(self, m: dict) -> None:
        self.planned_epochs = m.get("planned_epochs", self.planned_epochs)
        for name, value in m.items():
            if name in ("type", "epoch", "step", "planned_epochs") or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.buffer.append({"kind": "epoch", "step": m["step"], "epoch": m["epoch"], "name": name, "value": value})
        self.flush()
        self.ctx.progress(m["epoch"] / self.planned_epochs,
                          f"epoch {m['epoch']}/{self.planned_epochs}: val exact {m.get('val_exact_match', 0):.3f}, "
                          f"val CER {m.get('val_cer', 1):.3f}", force=True)
        self.ctx.log(f"epoch {m['epoch']}: {json.dumps({k: v for k, v in m.items() if k != 'type'})}")

    def on_checkpoint(self, path: Path, kind: str, metrics: dict) -> None:
        clean = {k: v for k, v in metrics.items() if k != "type"}
        register_checkpoint(self.ctx.settings, path, kind, job_id=self.ctx.job_id, epoch=metrics.get("epoch"),
                            metrics=clean)

    def on_pseudo_labels(self, teacher: Path, labels: list, info: dict) -> None:
        """Pseudo-labels are predictions of the model that read the pool (the first phase's, registered as this job's
        ``teacher``, or the teacher model given), never labels: they stay out of exports and of every label count."""
        model_id = self.teacher_model if self.teacher_model is not None else \
            register_checkpoint(self.ctx.settings, teacher, "teacher", job_id=self.ctx.job_id,
                                epoch=info["teacher_epochs"], metrics=info["teacher_best"])
        records = [{"model_id": model_id, "sample_id": self.pool_ids[p.path], "job_id": self.ctx.job_id,
                    "split": "pool", "text": p.text, "text_length": len(p.text), "confidence": p.confidence}
                   for p in labels if p.path in self.pool_ids]
        store_predictions(self.ctx.settings, model_id, records)
        self.ctx.log(f"{len(records):,} pseudo-labels stored as predictions of model {model_id} (the teacher)")

    def on_message(self, text: str) -> None:
        self.ctx.log(text)
        queue.set_progress(self.ctx.settings, self.ctx.job_id, message=text)

    def should_stop(self) -> bool:
        return self.ctx.should_stop()


def run_train(ctx: JobContext) -> dict:
    from ocr.datasets import Sample as OcrSample
    from ocr.datasets import holdout_split
    from ocr.selftrain import completed_epochs, fit_self_training

    p: P.TrainParams = P.parse("train", ctx.params)
    cfg = P.train_config(p)
    if cfg.device == "auto":
        cfg = replace(cfg, device=ctx.device)
    val_datasets, splits = p.val_datasets, p.splits
    if not val_datasets and splits is None:
        # the datasets' own validation split when they have one (Kaggle, synth), else a seeded holdout
        own = catalog.training_items(ctx.settings, p.datasets, ["validation"])
        if own and catalog.training_items(ctx.settings, p.datasets, ["train"]):
            val_datasets, splits = p.datasets, ["train"]
    items = catalog.training_items(ctx.settings, p.datasets, splits)
    val_items = catalog.training_items(ctx.settings, val_datasets, p.val_splits or ["validation"]) if val_datasets else []
    if val_datasets:
        val_ids = {v.sample_id for v in val_items}
        items = [it for it in items if it.sample_id not in val_ids]
    queue.set_data(ctx.settings, ctx.job_id, len(items) + len(val_items), catalog.data_hash(items + val_items))
    ctx.log(f"training data: {len(items):,} samples from {', '.join(p.datasets)}"
            + (f", validation: {len(val_items):,} from {', '.join(val_datasets)}" if val_items else ", 5 % held out"))
    train = [OcrSample(it.path, it.label, it.split) for it in items]
    val = [OcrSample(it.path, it.label, it.split) for it in val_items]
    if not val:
        train, val = holdout_split(train, cfg.val_fraction, cfg.seed)
    pool = catalog.pool_items(ctx.settings, p.unlabelled_datasets) if p.unlabelled_datasets else []
    if pool:
        ctx.log(f"unlabelled pool: {len(pool):,} samples from {', '.join(p.unlabelled_datasets)}")
    out = queue.run_dir(ctx.settings, ctx.job_id)
    done_epochs = completed_epochs(out) if p.resume else None
    resume = done_epochs is not None
    init = model_file(ctx.settings, p.init_model) if p.init_model is not None and not resume else None
    teacher = model_file(ctx.settings, p.teacher_model) if p.teacher_model is not None and not resume else None
    if resume:
        queue.clear_metrics_after(ctx.settings, ctx.job_id, done_epochs)
        ctx.log(f"resuming {out} after epoch {done_epochs}")
    cb = DbCallback(ctx, {it.path: it.sample_id for it in pool}, p.teacher_model)
    try:
        summary = fit_self_training(train, val, [it.path for it in pool], out, cfg, init=init, resume=resume,
                                    callback=cb, progress=False, teacher=teacher)
    finally:
        cb.flush()
    if summary.get("stopped") == "stop requested":
        ctx.cancelled = True
    return json.loads(json.dumps(summary, default=str))


def job_decoder(p) -> DecoderConfig:
    """An evaluate or predict job's decoder: its beam (0: greedy), and the names language model when ``lm``."""
    from ocr.decoder import DecoderConfig

    return DecoderConfig(beam=p.beam, lm="names" if p.lm else None)


def _predict(ctx: JobContext, model_id: int, rows: list, labelled: bool, split_name: Callable[[str], str],
             config: DecoderConfig) -> dict:
    import editdistance

    from ocr.recognize import Recognizer

    rec = Recognizer(model_file(ctx.settings, model_id), device=ctx.device)
    decoder = rec.decoder(config)
    ctx.log(f"decoder: {config.describe()}")
    from ocr.preprocess import load_image

    def scorable(r) -> str | None:
        """The label to score against: a usable one the model can spell, else None (predicted, not scored)."""
        if not labelled or r.label is None or r.status != "ok" or rec.alphabet.invalid_chars(r.label):
            return None
        return r.label

    def image(r):
        try:
            return load_image(ctx.settings.resolve(r.path))
        except ValueError as exc:
            skipped.append(r.id)
            ctx.log(f"sample {r.id} ({r.path}) skipped: {exc}", logging.WARNING)
            return None

    records, skipped = [], []
    batch = 64
    for start in range(0, len(rows), batch):
        loaded = [(r, im) for r in rows[start:start + batch] if (im := image(r)) is not None]
        chunk, images = [r for r, _ in loaded], [im for _, im in loaded]
        labels = [scorable(r) for r in chunk]
        readings = rec.score([rec.prepare(im) for im in images], labels, decoder) if chunk else []
        for r, label, reading in zip(chunk, labels, readings):
            wrong = label is not None and reading.text != label
            records.append({
                "model_id": model_id, "sample_id": r.id, "job_id": ctx.job_id, "split": split_name(r.split),
                "text": reading.text, "text_length": len(reading.text),
                "confidence": float(np.exp(reading.log_prob)), "label": label,
                "edit_distance": editdistance.eval(reading.text, label) if label is not None else None,
                "correct": (not wrong) if label is not None else None,
                "label_log_prob": reading.label_log_prob,
                "label_error_score": reading.log_prob - reading.label_log_prob if wrong else None,
                "runner_up": reading.runner_up, "margin": reading.margin,
                "embedding": reading.embedding.astype(np.float16).tobytes() if not labelled else None,  # pool only
            })
        ctx.progress(min(len(rows), start + batch) / len(rows) * 0.95, f"read {min(len(rows), start + batch):,} of {len(rows):,}")
        if ctx.should_stop():
            return {"stopped": "stop requested", "read": len(records)}
    store_predictions(ctx.settings, model_id, records)
    return {"n": len(records), "records": records, "skipped_images": len(skipped)}


def _samples(ctx: JobContext, dataset: str, where) -> list:
    ds = catalog.dataset_id(ctx.settings, dataset)
    with session(ctx.settings) as s:
        return s.execute(select(Sample.id, Sample.path, Sample.label, Sample.split, Sample.status)
                         .where(Sample.dataset_id == ds, *where).order_by(Sample.id)).all()


def run_evaluate(ctx: JobContext) -> dict:
    """Reads every usable sample of the split, replaces this model's predictions on them, writes metrics and report."""
    from ocr.metrics import accuracy_by_length, confusions, summarize

    p: P.EvaluateParams = P.parse("evaluate", ctx.params)
    rows = _samples(ctx, p.dataset, [Sample.split == p.split, Sample.status == "ok", Sample.label.is_not(None)])
    if not rows:
        raise ValueError(f"dataset {p.dataset!r} has no usable sample in split {p.split!r}")
    ctx.log(f"evaluating model {p.model} on {len(rows):,} samples of {p.dataset}:{p.split}")
    decoder = job_decoder(p)
    done = _predict(ctx, p.model, rows, True, lambda s: s, decoder)
    if "stopped" in done:
        ctx.cancelled = True
        return done
    scored = [r for r in done["records"] if r["label"] is not None]  # labels the model can spell
    if not scored:
        raise ValueError(f"no sample of {p.dataset}:{p.split} has a label this model can spell (every label has "
                         "characters outside the model's alphabet)")
    labels = [r["label"] for r in scored]
    texts = [r["text"] for r in scored]
    metrics = summarize(labels, texts)
    with session(ctx.settings) as s:
        metrics["excluded"] = dict(s.execute(
            select(Sample.status, func.count()).where(Sample.dataset_id == catalog.dataset_id(ctx.settings, p.dataset),
                                                      Sample.split == p.split, Sample.status != "ok")
            .group_by(Sample.status)).all())
    metrics["not_scored"] = len(done["records"]) - len(scored)
    metrics["skipped_images"] = done["skipped_images"]
    result = {"model": p.model, "dataset": p.dataset, "split": p.split, "decoder": decoder.describe(),
              "decoder_config": decoder.to_dict(), **metrics,
              "label_errors_suggested": sum(1 for r in done["records"] if r["label_error_score"] is not None
                                            and r["label_error_score"] > 0)}
    if p.report:
        result["report"] = _report(ctx, p, scored, rows, metrics, accuracy_by_length(labels, texts),
                                   confusions(labels, texts))
    ctx.log(json.dumps(result))
    return result


def _report(ctx: JobContext, p, records: list[dict], rows: list, metrics: dict, by_length, top_confusions) -> str:
    from ocr.evaluate import read_history
    from ocr.report import write_report
    from ocr.train import load_checkpoint

    out = ctx.settings.data_dir / "evals" / f"job-{ctx.job_id}"
    out.mkdir(parents=True, exist_ok=True)
    path = model_file(ctx.settings, p.model)
    ckpt = load_checkpoint(path)
    paths = {r.id: ctx.settings.resolve(r.path) for r in rows}
    wrong = [(paths[r["sample_id"]], r["label"], r["text"], r["confidence"]) for r in records if not r["correct"]]
    model = get_model(ctx.settings, p.model)
    write_report(out, {**metrics, "split": p.split, "data": p.dataset, "checkpoint": f"model {p.model} ({model.name})",
                       "decoder": job_decoder(p).describe()}, read_history(path, ckpt), by_length, top_confusions, wrong,
                 model=model.description or model.name)
    return ctx.settings.relative(out)


def run_predict(ctx: JobContext) -> dict:
    """Reads an unlabelled pool (or a split) so a person can label it, lowest confidence first."""
    p: P.PredictParams = P.parse("predict", ctx.params)
    where = [Sample.split == p.split] if p.split else [Sample.status == "unlabelled"]
    rows = _samples(ctx, p.dataset, where)
    if not rows:
        raise ValueError(f"dataset {p.dataset!r} has no sample to predict" + (f" in split {p.split!r}" if p.split else
                                                                             " without a label"))
    labelled = p.split is not None
    done = _predict(ctx, p.model, rows, labelled, lambda s: s, job_decoder(p))
    if "stopped" in done:
        ctx.cancelled = True
        return done
    conf = [r["confidence"] for r in done["records"]]
    return {"model": p.model, "dataset": p.dataset, "decoder_config": job_decoder(p).to_dict(), "n": done["n"],
            "skipped_images": done["skipped_images"],
            "scored": sum(1 for r in done["records"] if r["label"] is not None),
            "mean_confidence": float(np.mean(conf)) if conf else None, "below_0.5": sum(1 for c in conf if c < 0.5)}


def run_find_label_errors(ctx: JobContext) -> dict:
    """Scores every label of the datasets out of fold (``ocr.label_errors``) and stores the scores with their
    evidence, for Review's suspected label errors."""
    from ocr.datasets import Sample as OcrSample
    from ocr.label_errors import LabelErrorConfig, check_request, find_label_errors
    from ocr.train import Callback

    p: P.FindLabelErrorsParams = P.parse("find-label-errors", ctx.params)
    items = catalog.training_items(ctx.settings, p.datasets, p.splits)
    samples = [OcrSample(it.path, it.label, it.split) for it in items]
    cfg = LabelErrorConfig(folds=p.folds, max_minutes=p.max_minutes, lm="names" if p.lm else None, device=ctx.device)
    check_request(samples, cfg)
    queue.set_data(ctx.settings, ctx.job_id, len(items), catalog.data_hash(items))
    ctx.log(f"scoring {len(items):,} labels of {', '.join(p.datasets)} in {p.folds} folds from model {p.model}")

    class Progress(Callback):
        folds_done = 0

        def on_message(self, text: str) -> None:
            ctx.log(text)
            if text.startswith("fold ") and " scored " in text:
                self.folds_done += 1
            ctx.progress(0.05 + 0.9 * self.folds_done / p.folds, text)

        def should_stop(self) -> bool:
            return ctx.should_stop()

    issues = find_label_errors(samples, model_file(ctx.settings, p.model), queue.run_dir(ctx.settings, ctx.job_id),
                               cfg, Progress())
    ids = {it.path: it.sample_id for it in items}
    store_label_issues(ctx.settings, ctx.job_id, p.model, [
        {"sample_id": ids[x.sample.path], "label": x.sample.label, "reading": x.reading, "confidence": x.confidence,
         "score": x.score, "label_log_prob": x.label_log_prob, "in_sample_reading": x.in_sample_reading,
         "agrees": x.agrees, "fold": x.fold} for x in issues])
    if ctx.should_stop():
        ctx.cancelled = True
    doubted = [x for x in issues if x.score > 0]
    return {"model": p.model, "datasets": p.datasets, "labels": len(items), "scored": len(issues),
            "doubted": len(doubted), "both_models_agree": sum(x.agrees for x in doubted), "folds": p.folds,
            "top": [{"label": x.sample.label, "reading": x.reading, "score": round(x.score, 2)} for x in doubted[:10]]}


def run_publish(ctx: JobContext) -> dict:
    """The model's Hub folder (safetensors, config, ONNX, model card with the chosen evaluation's figures), uploaded
    in one commit with the worker's Hugging Face token (``HF_TOKEN`` or ``hf auth login``), or only written (dry
    run) under the job's run folder."""
    from ocr.publish import Evaluation, publish

    p: P.PublishParams = P.parse("publish", ctx.params)
    evaluation = None
    if p.evaluation_job is not None:
        with session(ctx.settings) as s:
            job = s.get(Job, p.evaluation_job)
        if job is None or job.kind != "evaluate" or job.status != "succeeded" or job.params.get("model") != p.model:
            raise ValueError(f"job {p.evaluation_job} is not a finished evaluation of model {p.model}")
        r = job.result or {}
        evaluation = Evaluation(exact_match=r["exact_match"], cer=r["cer"], n=r["n"], split=r["split"],
                                dataset=f"dataset {r['dataset']!r} of this project ({r['split']})",
                                decoder=r.get("decoder", "greedy"))
    folder = queue.run_dir(ctx.settings, ctx.job_id) / "hub"
    ctx.progress(0.1, "writing the model folder", force=True)
    result = publish(model_file(ctx.settings, p.model), p.repo_id, evaluation, private=p.private, license=p.license,
                     dry_run=p.dry_run, out=folder)
    ctx.log(f"publish: {json.dumps(result)}")
    return {**result, "folder": ctx.settings.relative(folder), "model": p.model}


TASKS = {"import": run_import, "synth": run_synth, "train": run_train, "evaluate": run_evaluate, "predict": run_predict,
         "find-label-errors": run_find_label_errors, "publish": run_publish}

