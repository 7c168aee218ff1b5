"""The review queries: a model's stored predictions, filtered, sorted and paginated in SQL (indexed, so a page
of 100k rows comes back in milliseconds), and the suggested label errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, insert, or_, select

from db.engine import session
from db.models import Job, LabelIssue, Model, Prediction, Sample
from db.settings import Settings

SORTS = ("lowest_confidence", "highest_edit_distance", "label_error", "sample")


@dataclass(frozen=True)
class ReviewQuery:
    model_id: int
    split: str | None = None
    dataset_id: int | None = None
    only_wrong: bool = True  # False: every prediction; unlabelled: the samples without a label
    unlabelled: bool = False
    text: str = ""  # in the label or the prediction
    min_length: int | None = None  # of the label (of the prediction for unlabelled samples)
    max_length: int | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    min_edit_distance: int | None = None
    max_edit_distance: int | None = None
    sort: str = "lowest_confidence"


def _where(q: ReviewQuery) -> list:
    cond = [Prediction.model_id == q.model_id]
    if q.split:
        cond.append(Prediction.split == q.split)
    if q.dataset_id is not None:
        cond.append(Sample.dataset_id == q.dataset_id)
    if q.unlabelled:
        cond.append(Sample.status == "unlabelled")
    elif q.only_wrong:
        cond.append(Prediction.correct.is_(False))
    if q.text:
        pattern = f"%{q.text.strip().upper()}%"
        cond.append(or_(Prediction.label.like(pattern), Prediction.text.like(pattern)))
    length = Prediction.text_length if q.unlabelled else func.length(Prediction.label)
    if q.min_length is not None:
        cond.append(length >= q.min_length)
    if q.max_length is not None:
        cond.append(length <= q.max_length)
    if q.min_confidence is not None:
        cond.append(Prediction.confidence >= q.min_confidence)
    if q.max_confidence is not None:
        cond.append(Prediction.confidence <= q.max_confidence)
    if q.min_edit_distance is not None:
        cond.append(Prediction.edit_distance >= q.min_edit_distance)
    if q.max_edit_distance is not None:
        cond.append(Prediction.edit_distance <= q.max_edit_distance)
    return cond


def _order(sort: str) -> list:
    if sort == "lowest_confidence":
        return [Prediction.confidence.asc(), Prediction.id]
    if sort == "highest_edit_distance":
        return [Prediction.edit_distance.desc(), Prediction.confidence.desc(), Prediction.id]
    if sort == "label_error":
        return [Prediction.label_error_score.desc().nulls_last(), Prediction.id]
    if sort == "sample":
        return [Prediction.sample_id]
    raise ValueError(f"unknown sort {sort!r}; choose from {', '.join(SORTS)}")


@dataclass(frozen=True)
class ModelReview:
    """What Review needs to know about a model: the splits it has predictions on, and the job that trained it."""

    splits: list[str]
    job_id: int | None
    job_params: dict | None
    data_read_at: datetime  # when its training data was read (its registration, for an imported model)


def model_review(settings: Settings, model_id: int) -> ModelReview:
    with session(settings) as s:
        splits = sorted(s.scalars(select(Prediction.split).where(Prediction.model_id == model_id).distinct()))
        model = s.get(Model, model_id)
        job = s.get(Job, model.job_id) if model.job_id else None
        return ModelReview(splits, job.id if job else None, dict(job.params) if job else None,
                           (job.data_read_at if job else None) or model.created_at)


def store_predictions(settings: Settings, model_id: int, records: list[dict]) -> None:
    """Replace this model's predictions on the records' samples with ``records`` (``Prediction`` columns)."""
    ids = [r["sample_id"] for r in records]
    with session(settings, write=True) as s:
        for i in range(0, len(ids), 5000):
            s.execute(delete(Prediction).where(Prediction.model_id == model_id, Prediction.sample_id.in_(ids[i:i + 5000])))
        for i in range(0, len(records), 5000):
            s.execute(insert(Prediction), records[i:i + 5000])


def review_page(settings: Settings, q: ReviewQuery, page: int = 0, page_size: int = 50) -> tuple[list[dict], int]:
    """(rows of one page, total matching rows)."""
    cond = and_(*_where(q))
    order = _order(q.sort)
    base = select(Prediction.id)
    if q.dataset_id is not None or q.unlabelled:  # only these filters need the sample row to count
        base = base.join(Sample, Sample.id == Prediction.sample_id)
    base = base.where(cond)
    stmt = (select(Prediction.id, Prediction.sample_id, Prediction.text, Prediction.confidence, Prediction.label,
                   Prediction.edit_distance, Prediction.correct, Prediction.label_error_score, Prediction.split,
                   Sample.path, Sample.status, Sample.label.label("current_label"), Sample.original_label,
                   Sample.dataset_id)
            .join(Sample, Sample.id == Prediction.sample_id).where(cond).order_by(*order)
            .limit(page_size).offset(page * page_size))
    with session(settings) as s:
        total = s.scalar(select(func.count()).select_from(base.subquery()))
        rows = [dict(r._mapping) for r in s.execute(stmt)]
    return rows, total or 0


def label_errors(settings: Settings, model_id: int, split: str | None = None, min_confidence: float = 0.0,
                 limit: int = 50) -> list[dict]:
    """Samples where the model disagrees with the label, most likely label errors first: ranked by
    log P(model's reading) - log P(given label) under the model (confident-learning style), not by edit distance."""
    rows, _ = review_page(settings, ReviewQuery(model_id=model_id, split=split, min_confidence=min_confidence or None,
                                                sort="label_error"), page_size=limit)
    return rows


def compare_models(settings: Settings, model_a: int, model_b: int, split: str | None = None) -> dict:
    """Two models on the samples both have predictions for (e.g. the same evaluation split): exact match, CER, and the
    samples that went from wrong to right and from right to wrong."""
    import editdistance
    from sqlalchemy.orm import aliased

    pa, pb = aliased(Prediction), aliased(Prediction)
    stmt = (select(Sample.id, Sample.path, Sample.label, pa.text, pb.text.label("text_b"))
            .join(pa, pa.sample_id == Sample.id).join(pb, pb.sample_id == Sample.id)
            .where(pa.model_id == model_a, pb.model_id == model_b, Sample.status == "ok", Sample.label.is_not(None)))
    if split:
        stmt = stmt.where(pa.split == split, pb.split == split)
    with session(settings) as s:
        rows = s.execute(stmt.order_by(Sample.id)).all()
    n = len(rows)
    chars = sum(len(r.label) for r in rows) or 1

    def figures(texts):
        return {"exact_match": sum(t == r.label for t, r in zip(texts, rows)) / n if n else 0.0,
                "cer": sum(editdistance.eval(t, r.label) for t, r in zip(texts, rows)) / chars}

    def row(r):
        return {"sample_id": r.id, "path": r.path, "label": r.label, "a": r.text, "b": r.text_b}

    return {"n": n, "a": figures([r.text for r in rows]), "b": figures([r.text_b for r in rows]),
            "fixed": [row(r) for r in rows if r.text != r.label and r.text_b == r.label],
            "broken": [row(r) for r in rows if r.text == r.label and r.text_b != r.label]}


def store_label_issues(settings: Settings, job_id: int, model_id: int | None, records: list[dict]) -> None:
    """The out-of-fold scores of a ``find-label-errors`` job (``LabelIssue`` columns), replacing its earlier ones."""
    with session(settings, write=True) as s:
        s.execute(delete(LabelIssue).where(LabelIssue.job_id == job_id))
        for i in range(0, len(records), 5000):
            s.execute(insert(LabelIssue), [{**r, "job_id": job_id, "model_id": model_id} for r in records[i:i + 5000]])


def label_error_jobs(settings: Settings) -> list[dict]:
    """Finished searches that stored scores, newest first: id, when, how many labels were scored."""
    with session(settings) as s:
        rows = s.execute(select(LabelIssue.job_id, func.count(), func.max(LabelIssue.created_at))
                         .group_by(LabelIssue.job_id).order_by(LabelIssue.job_id.desc())).all()
    return [{"job_id": j, "scored": n, "at": at} for j, n, at in rows]


def suspected_label_errors(settings: Settings, job_id: int, page: int = 0, page_size: int = 20,
                           include_settled: bool = False, hard_to_read: bool = False) -> tuple[list[dict], int]:
    """One search's samples whose label an out-of-fold model doubts (score > 0), most likely error first, with the
    evidence and the sample's current label; ``hard_to_read``: instead, those doubted without a sure reading
    (``ocr.curation.label_errors.LabelIssue.hard_to_read``), kept apart so they do not crowd the errors. A sample whose
    label or status changed since the search is settled and left out unless asked for."""
    hard = LabelIssue.hard_to_read.is_(True)
    where = [LabelIssue.job_id == job_id, LabelIssue.score > 0, hard if hard_to_read else ~hard]
    if not include_settled:
        where += [Sample.label == LabelIssue.label, Sample.status == "ok"]
    with session(settings) as s:
        total = s.scalar(select(func.count()).select_from(LabelIssue).join(Sample, Sample.id == LabelIssue.sample_id)
                         .where(*where))
        rows = s.execute(select(LabelIssue, Sample.path, Sample.label, Sample.status, Sample.dataset_id)
                         .join(Sample, Sample.id == LabelIssue.sample_id).where(*where)
                         .order_by(LabelIssue.score.desc(), LabelIssue.agrees.desc(), LabelIssue.id)
                         .offset(page * page_size).limit(page_size)).all()
    return [{"sample_id": x.sample_id, "path": path, "label": x.label, "current_label": label, "status": status,
             "dataset_id": dataset_id, "reading": x.reading, "confidence": x.confidence, "score": x.score,
             "in_sample_reading": x.in_sample_reading, "agrees": x.agrees, "fold": x.fold}
            for x, path, label, status, dataset_id in rows], total


def label_queue(settings: Settings, model_id: int, datasets: list[int] | None = None, size: int = 20,
                skip: set[int] | frozenset[int] = frozenset(), look_ahead: int = 10) -> tuple[list[dict], int]:
    """The pool images a label helps most next, in order, and how many pool images this model has read.

    ``ocr.curation.acquire.acquisition_order`` over the ``size * look_ahead`` most uncertain stored readings (smallest margin
    between the reading and the runner-up, or lowest P(reading) where no runner-up was stored): uncertain first,
    near-duplicates (same or one-letter-off reading, very similar image embedding) pushed to the end of the batch.
    ``skip``: sample ids passed over in this session."""
    import numpy as np

    from ocr.curation.acquire import PoolImage, acquisition_order

    where = [Prediction.model_id == model_id, Sample.status == "unlabelled", Sample.label.is_(None)]
    if datasets:
        where.append(Sample.dataset_id.in_(datasets))
    if skip:
        where.append(Sample.id.not_in(list(skip)))
    sure = func.coalesce(Prediction.margin, Prediction.confidence)
    with session(settings) as s:
        total = s.scalar(select(func.count()).select_from(Prediction).join(Sample, Sample.id == Prediction.sample_id)
                         .where(*where))
        rows = s.execute(select(Prediction.sample_id, Sample.path, Prediction.text, Prediction.confidence,
                                Prediction.runner_up, Prediction.margin, Prediction.embedding)
                         .join(Sample, Sample.id == Prediction.sample_id).where(*where)
                         .order_by(sure, Prediction.sample_id).limit(size * look_ahead)).all()
    info = {r.sample_id: r for r in rows}
    pool = [PoolImage(r.sample_id, r.text, r.confidence, r.margin,
                      np.frombuffer(r.embedding, dtype=np.float16).astype(np.float32) if r.embedding else None)
            for r in rows]
    return [{"sample_id": p.key, "path": info[p.key].path, "text": p.text, "confidence": p.confidence,
             "runner_up": info[p.key].runner_up, "margin": p.margin, "acquisition": p.uncertainty}
            for p in acquisition_order(pool, size)], total
