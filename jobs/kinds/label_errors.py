"""``find-label-errors``: every label of datasets scored out of fold (``ocr.curation.label_errors``), stored with
its evidence for Review's suspected label errors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from db import catalog
from db.registry import get_model, model_file
from db.review import store_label_issues
from db.settings import Settings
from jobs.context import Count, JobContext, set_data
from jobs.params import JobKind, dataset_exists_or_coming, require
from ocr.training.config import positive_float


@dataclass(frozen=True)
class FindLabelErrorsParams:
    model: int  # each fold is fine-tuned from this model
    datasets: list[str]
    splits: list[str] | None = None  # None: every split except test
    folds: int = 4
    max_minutes: float = 8.0  # the folds' fine-tuning, all together
    lm: bool = True  # read and score with the names language model (``LabelErrorConfig.lm``); False: the model alone

    def check(self) -> None:
        require(bool(self.datasets), "give at least one dataset")
        require(self.folds >= 2, f"folds={self.folds} must be at least 2")
        require(self.max_minutes > 0, f"max_minutes={self.max_minutes} must be above 0")


def add_options(k: argparse.ArgumentParser) -> None:
    k.add_argument("--model", type=int, required=True, metavar="MODEL_ID", help="each fold is fine-tuned from it")
    k.add_argument("--dataset", action="append", required=True, metavar="NAME")
    k.add_argument("--split", action="append", help="splits to score (default: all but test)")
    k.add_argument("--folds", type=int, default=4)
    k.add_argument("--max-minutes", type=positive_float, default=8.0, help="fine-tuning budget of all the folds")
    k.add_argument("--no-lm", dest="lm", action="store_false",
                   help="score with the model alone (greedy), not with the names language model")


def from_options(args: argparse.Namespace) -> dict:
    return {"model": args.model, "datasets": args.dataset, "splits": args.split, "folds": args.folds,
            "max_minutes": args.max_minutes, "lm": args.lm}


def prepare(settings: Settings, p: FindLabelErrorsParams, any_path: bool, secrets: dict[str, str]):
    get_model(settings, p.model)
    for name in p.datasets:
        dataset_exists_or_coming(settings, name)
    return p


def _callback(ctx: JobContext):
    """Progress from the folds scored (a structured step, not a message read back), stop requests from the job."""
    from ocr.training.loop import Callback

    class Progress(Callback):
        fraction = 0.05

        def on_message(self, text: str) -> None:
            ctx.log(text)
            ctx.progress(self.fraction, text)

        def on_progress(self, done: int, total: int, unit: str) -> None:
            self.fraction = 0.05 + 0.9 * done / total
            ctx.progress(self.fraction, f"{done} of {total} {unit}s scored", Count(done, total, unit), force=True)

        def should_stop(self) -> bool:
            return ctx.should_stop()

    return Progress()


def run(ctx: JobContext) -> dict:
    from ocr.curation.label_errors import LabelErrorConfig, check_request, find_label_errors
    from ocr.data.datasets import Sample

    p: FindLabelErrorsParams = KIND.parse(ctx.params)
    items = catalog.training_items(ctx.settings, p.datasets, p.splits)
    samples = [Sample(it.path, it.label, it.split) for it in items]
    cfg = LabelErrorConfig(folds=p.folds, max_minutes=p.max_minutes, lm="names" if p.lm else None, device=ctx.device)
    check_request(samples, cfg)
    set_data(ctx.settings, ctx.job_id, len(items), catalog.data_hash(items))
    ctx.log(f"scoring {len(items):,} labels of {', '.join(p.datasets)} in {p.folds} folds from model {p.model}")
    issues = find_label_errors(samples, model_file(ctx.settings, p.model), ctx.run_dir(), cfg,
                               _callback(ctx))
    ids = {it.path: it.sample_id for it in items}
    store_label_issues(ctx.settings, ctx.job_id, p.model, [
        {"sample_id": ids[x.sample.path], "label": x.sample.label, "reading": x.reading, "confidence": x.confidence,
         "score": x.score, "label_log_prob": x.label_log_prob, "in_sample_reading": x.in_sample_reading,
         "agrees": x.agrees, "hard_to_read": x.hard_to_read, "fold": x.fold} for x in issues])
    ctx.should_stop()  # a stop asked for during the last fold: the job ends cancelled
    doubted = [x for x in issues if x.score > 0 and not x.hard_to_read]
    return {"model": p.model, "datasets": p.datasets, "labels": len(items), "scored": len(issues),
            "doubted": len(doubted), "hard_to_read": sum(x.hard_to_read for x in issues),
            "both_models_agree": sum(x.agrees for x in doubted), "folds": p.folds,
            "top": [{"label": x.sample.label, "reading": x.reading, "score": round(x.score, 2)} for x in doubted[:10]]}


KIND = JobKind("find-label-errors", "score every label out of fold: the likeliest wrong labels first (Review: "
               "suspected label errors)", FindLabelErrorsParams, run, add_options, from_options, prepare)
