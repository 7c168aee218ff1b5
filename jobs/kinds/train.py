"""``train``: train (or fine-tune) on the current labels of datasets, with self-training on an unlabelled pool when
asked; metrics, progress and checkpoints go to the database as the run goes."""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from db import catalog
from db.registry import get_model, model_file, pull_job_checkpoints, register_checkpoint
from db.review import store_predictions
from db.settings import Settings
from jobs.context import JobContext, add_metrics, clear_metrics_after, set_data, set_progress
from jobs.params import JobKind, ParamsError, build, check_device, dataset_exists_or_coming, require
from ocr.alphabet import CHARSET_CHOICES
from ocr.data.datasets import SPLITS
from ocr.training.config import TrainConfig, add_training_options, training_options

METRIC_FLUSH_S = 2.0
MAX_RANKS = 64


@dataclass(frozen=True)
class TrainParams:
    datasets: list[str]
    splits: list[str] | None = None  # None: every split except test
    val_datasets: list[str] = field(default_factory=list)  # empty: a seeded holdout of the training data
    val_splits: list[str] | None = None
    init_model: int | None = None  # fine-tune from this model id
    resume: bool = False
    config: dict = field(default_factory=dict)  # TrainConfig fields to override
    unlabelled_datasets: list[str] = field(default_factory=list)  # the pool self-training reads (config.self_train)
    teacher_model: int | None = None  # this model reads the pool (a loop's current model); None: a teacher trained first
    ranks: int = 1  # devices of one worker it trains on, one DDP rank each (torchrun)

    def check(self) -> None:
        require(bool(self.datasets), "give at least one dataset")
        bad = [s for splits in (self.splits, self.val_splits) for s in splits or [] if s not in SPLITS]
        require(not bad, f"unknown split(s) {', '.join(bad)}; choose from {', '.join(SPLITS)}")
        cfg = self.train_config()
        require(cfg.charset in CHARSET_CHOICES or Path(cfg.charset).is_file(),
                f"unknown character set {cfg.charset!r}; choose from {', '.join(CHARSET_CHOICES)} or give a file on "
                "the server that lists the characters")
        require(self.teacher_model is None or cfg.self_train > 0, "teacher_model reads the unlabelled images for "
                "self-training; set config.self_train and unlabelled_datasets too")
        require(cfg.self_train == 0 or bool(self.unlabelled_datasets), "self-training needs unlabelled_datasets, "
                "the datasets whose samples without a label it reads")
        require(1 <= self.ranks <= MAX_RANKS, f"gpus (ranks) must be between 1 and {MAX_RANKS}")
        require(self.ranks == 1 or cfg.self_train == 0, "self-training runs on one device: give it --gpus 1 (its "
                "teacher, its reading of the pool and its student are one process)")
        require(self.ranks == 1 or not cfg.device.startswith("cuda:"), f"a job on {self.ranks} GPUs takes the free "
                f"GPUs of one worker: ask for device cuda (or auto), not {cfg.device}")

    def train_config(self) -> TrainConfig:
        """The run's ``TrainConfig`` (it checks its own ranges)."""
        try:
            return build(TrainConfig, self.config, "config")
        except ValueError as exc:
            raise ParamsError(str(exc) if str(exc).startswith("config") else f"config: {exc}") from None


def add_options(k: argparse.ArgumentParser) -> None:
    k.add_argument("--dataset", action="append", required=True, metavar="NAME")
    k.add_argument("--split", action="append", help="splits to train on (default: all but test)")
    k.add_argument("--val-dataset", action="append", default=[], metavar="NAME",
                   help="validate on this dataset's validation split (default: a seeded 5 %% holdout)")
    k.add_argument("--val-split", action="append")
    add_training_options(k)
    k.add_argument("--device", default="auto", help="auto (the worker's device), cpu, cuda, cuda:N")
    k.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="train on N devices of one worker as N DDP ranks (torchrun): N of its free GPUs, or on a CPU "
                        "worker started with --slots N, N CPU processes (default 1)")
    k.add_argument("--init", type=int, metavar="MODEL_ID", help="fine-tune from this model")
    k.add_argument("--unlabelled", action="append", default=[], metavar="NAME",
                   help="self-training reads the samples without a label of this dataset (with --self-train)")
    k.add_argument("--teacher", type=int, metavar="MODEL_ID",
                   help="with --self-train: this model reads the unlabelled samples instead of a teacher trained "
                        "first (the model you retrain, say); the whole run trains on labels + its pseudo-labels")


def from_options(args: argparse.Namespace) -> dict:
    return {"datasets": args.dataset, "splits": args.split, "val_datasets": args.val_dataset,
            "val_splits": args.val_split, "init_model": args.init, "config": {**training_options(args),
                                                                                "device": args.device},
            "unlabelled_datasets": args.unlabelled, "teacher_model": args.teacher, "ranks": args.gpus}


def prepare(settings: Settings, p: TrainParams, any_path: bool, secrets: dict[str, str]) -> TrainParams:
    for name in [*p.datasets, *p.val_datasets]:
        dataset_exists_or_coming(settings, name)
    for model_id in (p.init_model, p.teacher_model):
        if model_id is not None:
            get_model(settings, model_id)
    return p


def device(p: TrainParams) -> str:
    return check_device(p.train_config().device)


@dataclass(frozen=True)
class TrainProgress:
    """Where a training run is: the Train page and ``jobs status`` show these fields."""

    epoch: int
    epochs: int  # planned (a time budget re-plans them)
    step: int
    loss: float | None = None
    val_exact: float | None = None  # of the last finished epoch
    val_cer: float | None = None
    eta_min: float | None = None


def _finite(value: float | None) -> float | None:
    """A figure for a JSON column (PostgreSQL refuses NaN)."""
    return value if value is not None and math.isfinite(value) else None


class DbCallback:
    """``ocr.training.loop.Callback`` that stores metrics, progress and checkpoints in the database. Step metrics are
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
        add_metrics(self.ctx.settings, self.ctx.job_id, rows)
        self.last_flush = time.monotonic()

    def on_start(self, info: dict) -> None:
        self.steps_per_epoch, self.planned_epochs = max(1, info["steps_per_epoch"]), max(1, info["epochs"])
        self.ctx.log(f"training: {json.dumps(info)}")

    def on_step(self, m: dict) -> None:
        self.planned_epochs = m.get("planned_epochs", self.planned_epochs)
        for name in self.STEP_METRICS:
            if math.isfinite(m[name]):
                self.buffer.append({"kind": "step", "step": m["step"], "epoch": m["epoch"], "name": name, "value": m[name]})
        done = m["step"] / (self.planned_epochs * self.steps_per_epoch)
        if time.monotonic() - self.last_flush > METRIC_FLUSH_S:
            self.flush()
            eta_min = (time.monotonic() - self.started) / max(done, 1e-9) * (1 - done) / 60 if done > 0.02 else None
            eta = f", about {eta_min:.1f} min left" if eta_min is not None else ""
            loss = _finite(m["train_loss"])
            self.ctx.progress(done, f"epoch {m['epoch']}/{self.planned_epochs}, step {m['step']}, "
                                    f"loss {m['train_loss']:.3f}{eta}",
                              TrainProgress(m["epoch"], self.planned_epochs, m["step"], loss, eta_min=eta_min))

    def on_epoch(self, m: dict) -> None:
        self.planned_epochs = m.get("planned_epochs", self.planned_epochs)
        for name, value in m.items():
            if name in ("type", "epoch", "step", "planned_epochs") or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.buffer.append({"kind": "epoch", "step": m["step"], "epoch": m["epoch"], "name": name, "value": value})
        self.flush()
        exact, cer = _finite(m.get("val_exact_match")), _finite(m.get("val_cer"))
        self.ctx.progress(m["epoch"] / self.planned_epochs,
                          f"epoch {m['epoch']}/{self.planned_epochs}: val exact {exact or 0:.3f}, "
                          f"val CER {1 if cer is None else cer:.3f}",
                          TrainProgress(m["epoch"], self.planned_epochs, m["step"], val_exact=exact, val_cer=cer),
                          force=True)
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
        set_progress(self.ctx.settings, self.ctx.job_id, message=text)

    def should_stop(self) -> bool:
        return self.ctx.should_stop()


def _data(ctx: JobContext, p: TrainParams) -> tuple[list, list]:
    """The training and validation items: the datasets' own validation split when they have one (Kaggle, synth) and
    none was named, else the named validation data, else (empty) a seeded holdout later."""
    val_datasets, splits = p.val_datasets, p.splits
    if not val_datasets and splits is None:
        own = catalog.training_items(ctx.settings, p.datasets, ["validation"])
        if own and catalog.training_items(ctx.settings, p.datasets, ["train"]):
            val_datasets, splits = p.datasets, ["train"]
    items = catalog.training_items(ctx.settings, p.datasets, splits)
    val_items = catalog.training_items(ctx.settings, val_datasets, p.val_splits or ["validation"]) if val_datasets else []
    val_ids = {v.sample_id for v in val_items}
    items = [it for it in items if it.sample_id not in val_ids]
    if ctx.main:
        set_data(ctx.settings, ctx.job_id, len(items) + len(val_items), catalog.data_hash(items + val_items))
    ctx.log(f"training data: {len(items):,} samples from {', '.join(p.datasets)}"
            + (f", validation: {len(val_items):,} from {', '.join(val_datasets)}" if val_items else ", 5 % held out"))
    return items, val_items


def run(ctx: JobContext) -> dict:
    from ocr.data.datasets import Sample, holdout_split
    from ocr.training.selftrain import completed_epochs, fit_self_training

    p: TrainParams = KIND.parse(ctx.params)
    cfg = replace(p.train_config(), device=ctx.device)  # the one its worker gave it (named as this process sees it)
    items, val_items = _data(ctx, p)
    train = [Sample(it.path, it.label, it.split) for it in items]
    val = [Sample(it.path, it.label, it.split) for it in val_items]
    if not val:
        train, val = holdout_split(train, cfg.val_fraction, cfg.seed)
    pool = catalog.pool_items(ctx.settings, p.unlabelled_datasets) if p.unlabelled_datasets else []
    if pool:
        ctx.log(f"unlabelled pool: {len(pool):,} samples from {', '.join(p.unlabelled_datasets)}")
    out = ctx.run_dir()
    if p.resume:
        pull_job_checkpoints(ctx.settings, ctx.job_id)
    done_epochs = completed_epochs(out) if p.resume else None
    resume = done_epochs is not None
    init = model_file(ctx.settings, p.init_model) if p.init_model is not None and not resume else None
    teacher = model_file(ctx.settings, p.teacher_model) if p.teacher_model is not None and not resume else None
    if resume and ctx.main:
        clear_metrics_after(ctx.settings, ctx.job_id, done_epochs)
        ctx.log(f"resuming {out} after epoch {done_epochs}")
    cb = DbCallback(ctx, {it.path: it.sample_id for it in pool}, p.teacher_model)
    try:
        summary = fit_self_training(train, val, [it.path for it in pool], out, cfg, init=init, resume=resume,
                                    callback=cb, progress=False, teacher=teacher)
    finally:
        cb.flush()
    if ctx.main and (out / "best.pt").is_file() and not ctx.should_stop():
        _make_onnx(ctx, out / "best.pt")
    return json.loads(json.dumps(summary, default=str))


def _make_onnx(ctx: JobContext, best: Path) -> None:
    """The model's ONNX file beside it (``ocr.engines``): every CPU reader of the model (Draw, Label next, evaluate
    and predict jobs) runs onnxruntime from its first read."""
    from ocr.checkpoint import ModelError
    from ocr.engines import make_onnx
    from ocr.sharing.export import ExportError

    try:
        made = make_onnx(best)
        ctx.settings.push([made])  # a reader on another machine pulls it with the checkpoint (db.registry.model_file)
        ctx.log(f"{made.name} made: CPU readers of the model use onnxruntime")
    except (ModelError, ExportError) as exc:
        ctx.log(f"no ONNX file for {best.name} ({exc}): it reads with torch", logging.WARNING)


KIND = JobKind("train", "train (or fine-tune with --init) on the current labels of datasets", TrainParams, run,
               add_options, from_options, prepare, device, lambda p: p.ranks, TrainProgress)
