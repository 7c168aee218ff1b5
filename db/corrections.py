"""The correction loop: every change to a sample's label or status is one transaction that writes an
append-only ``LabelEdit`` and updates the sample (and the stored predictions' correctness) together."""

from __future__ import annotations

from datetime import datetime

import editdistance
from sqlalchemy import func, select

from db.engine import session
from db.models import SAMPLE_STATUSES, Dataset, LabelEdit, Prediction, Sample
from db.settings import Settings
from ocr.alphabet import LabelError, LabelRules


class CorrectionError(ValueError):
    """A correction that cannot be applied, with a message meant for the user."""


ANY_SET = LabelRules(charset="any")


def validate_label(label: str, rules: LabelRules = ANY_SET) -> str:
    """``LabelRules.validate`` as a ``CorrectionError``."""
    try:
        return rules.validate(label)
    except LabelError as exc:
        raise CorrectionError(str(exc)) from None


def dataset_rules(s, dataset_id: int) -> LabelRules:
    """How the dataset's labels were normalised at import (older imports: the Kaggle defaults)."""
    summary = s.scalar(select(Dataset.import_summary).where(Dataset.id == dataset_id)) or {}
    return LabelRules.from_dict(summary.get("label_rules"))


def new_characters(s, dataset_id: int, text: str) -> str:
    """Characters of ``text`` outside the dataset's character set and not in any of its usable labels yet: a model
    trained on it so far cannot write them; the next training grows its set (``TrainConfig.grow_charset``)."""
    outside = dataset_rules(s, dataset_id).outside(text)
    return "".join(c for c in outside if s.scalar(
        select(Sample.id).where(Sample.dataset_id == dataset_id, Sample.status == "ok",
                                Sample.label.contains(c, autoescape=True)).limit(1)) is None)


def _locked_sample(s, sample_id: int) -> Sample:
    sample = s.scalar(select(Sample).where(Sample.id == sample_id).with_for_update())
    if sample is None:
        raise CorrectionError(f"no sample with id {sample_id}")
    return sample


def _apply(s, sample: Sample, label: str | None, status: str, source: str, user: str | None,
           reverts: int | None = None) -> LabelEdit | None:
    if sample.label == label and sample.status == status:
        return None
    edit = LabelEdit(sample_id=sample.id, old_label=sample.label, new_label=label, old_status=sample.status,
                     new_status=status, source=source, user_name=user, reverts_id=reverts)
    s.add(edit)
    sample.label, sample.status = label, status
    for p in s.scalars(select(Prediction).where(Prediction.sample_id == sample.id)):
        p.label = label if status == "ok" else None
        p.edit_distance = editdistance.eval(p.text, label) if p.label is not None else None
        p.correct = (p.text == label) if p.label is not None else None
        if p.correct:
            p.label_error_score = None
    s.flush()
    return edit


def _result(sample: Sample, edit: LabelEdit | None, new_chars: str = "") -> dict:
    return {"sample_id": sample.id, "label": sample.label, "status": sample.status,
            "edit_id": edit.id if edit is not None else None, "changed": edit is not None, "new_characters": new_chars}


def correct_label(settings: Settings, sample_id: int, label: str, user: str | None = None, source: str = "user") -> dict:
    """Set the label, normalised as its dataset's labels are; the sample becomes usable for training. The result's
    ``new_characters``: those the dataset had not had (the next training adds them to the model's set)."""
    with session(settings, write=True) as s:
        sample = _locked_sample(s, sample_id)
        text = validate_label(label, dataset_rules(s, sample.dataset_id))
        new = new_characters(s, sample.dataset_id, text)
        return _result(sample, _apply(s, sample, text, "ok", source, user), new)


def accept_prediction(settings: Settings, sample_id: int, model_id: int, user: str | None = None) -> dict:
    """Take the model's stored reading of the sample as its label."""
    with session(settings) as s:
        text = s.scalar(select(Prediction.text).where(Prediction.sample_id == sample_id, Prediction.model_id == model_id))
    if text is None:
        raise CorrectionError(f"model {model_id} has no prediction for sample {sample_id}")
    return correct_label(settings, sample_id, text, user, source="prediction")


def set_status(settings: Settings, sample_id: int, status: str, user: str | None = None) -> dict:
    """Mark a sample unreadable, empty or excluded (it leaves the training data), or ``ok`` again."""
    if status not in SAMPLE_STATUSES:
        raise CorrectionError(f"unknown status {status!r}; choose from {', '.join(SAMPLE_STATUSES)}")
    with session(settings, write=True) as s:
        sample = _locked_sample(s, sample_id)
        if status == "ok":
            label = sample.label or sample.original_label
            if not label:
                raise CorrectionError(f"sample {sample_id} has no label; give one with a correction")
            validate_label(label)
        else:
            label = sample.label
        return _result(sample, _apply(s, sample, label, status, "user", user))


def undo_last(settings: Settings, sample_id: int, user: str | None = None) -> dict:
    """Revert the newest edit of the sample not yet reverted (repeat to walk back further)."""
    with session(settings, write=True) as s:
        sample = _locked_sample(s, sample_id)
        edits = s.scalars(select(LabelEdit).where(LabelEdit.sample_id == sample_id).order_by(LabelEdit.id.desc())).all()
        reverted = {e.reverts_id for e in edits if e.reverts_id is not None}
        target = next((e for e in edits if e.source != "undo" and e.id not in reverted), None)
        if target is None:
            raise CorrectionError(f"sample {sample_id} has no edit to undo")
        edit = _apply(s, sample, target.old_label, target.old_status, "undo", user, reverts=target.id)
        if edit is None:  # already back where the edit started: still record that it is undone
            edit = LabelEdit(sample_id=sample.id, old_label=sample.label, new_label=sample.label,
                             old_status=sample.status, new_status=sample.status, source="undo", user_name=user,
                             reverts_id=target.id)
            s.add(edit)
            s.flush()
        return _result(sample, edit)


def history(settings: Settings, sample_id: int) -> list[dict]:
    """The sample's edits, oldest first."""
    with session(settings) as s:
        edits = s.scalars(select(LabelEdit).where(LabelEdit.sample_id == sample_id).order_by(LabelEdit.id)).all()
    return [{"id": e.id, "time": e.created_at, "old_label": e.old_label, "new_label": e.new_label,
             "old_status": e.old_status, "new_status": e.new_status, "source": e.source, "user": e.user_name,
             "reverts": e.reverts_id} for e in edits]


def edits_since(settings: Settings, when: datetime | None, dataset_ids: list[int] | None = None) -> int:
    """How many samples had their label or status changed after ``when`` (e.g. since a model's training data was read)."""
    stmt = select(func.count(func.distinct(LabelEdit.sample_id)))
    if when is not None:
        stmt = stmt.where(LabelEdit.created_at > when)
    if dataset_ids:
        stmt = stmt.join(Sample, Sample.id == LabelEdit.sample_id).where(Sample.dataset_id.in_(dataset_ids))
    with session(settings) as s:
        return s.scalar(stmt) or 0
