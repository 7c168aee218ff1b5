"""Datasets and samples in the database: idempotent import, the training data of a job, Kaggle CSV export.

An image is identified by the SHA-256 of its bytes, so importing the same folder twice adds nothing. Rows the
Kaggle importer excludes are kept (blank -> unlabelled, UNREADABLE, EMPTY, characters outside the alphabet ->
excluded with the reason) so they can be reviewed and labelled later; only rows without a readable image are left out.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import delete, func, insert, select

from db.engine import session
from db.models import SOURCES, Dataset, LabelEdit, Sample
from db.settings import Settings
from db.storage import file_hash, link_or_copy
from ocr.alphabet import LabelError, LabelRules
from ocr.data.datasets import (
    SPLITS,
    NotKaggleLayout,
    check_image,
    csv_path,
    extract_zip,
    image_dir,
    image_files,
    import_kaggle,
    inside,
)
from ocr.limits import MAX_LABEL_LENGTH

POOL_SPLIT = "pool"  # images imported without labels; those labelled later are trained on
CHUNK = 2000
STATUS_OF_REASON = {"blank": "unlabelled", "unreadable": "unreadable", "empty": "empty", "bad_chars": "excluded",
                    "too_long": "excluded", "conflicting": "excluded"}
KAGGLE_TEXT = {"unreadable": "UNREADABLE", "empty": "EMPTY"}


class CatalogError(ValueError):
    """Bad input to the catalog, with a message meant for the user."""


@dataclass(frozen=True)
class TrainingItem:
    sample_id: int
    path: Path
    label: str | None  # None only in a self-training pool
    split: str


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "dataset"


def _rows(path: Path, rules: LabelRules | None, extract_to: Path) -> tuple[Path, list[dict], dict]:
    """Everything to insert from a Kaggle-layout folder/zip or a plain folder (or zip) of images (an unlabelled pool).
    A zip is extracted into a new folder under ``extract_to``; files reached through a link that leaves the folder
    are never read."""
    if path.is_file():
        path = extract_zip(path, extract_to)
    if not path.is_dir():
        raise CatalogError(f"{path}: not a Kaggle-layout folder or zip, nor a folder of images")
    try:
        result = import_kaggle(path, check_images=False, rules=rules)
    except NotKaggleLayout:
        result = None
    if result is not None:
        root = result.root
        rows = [{"file": s.path, "split": s.split, "label": s.label, "original": s.label, "status": "ok", "note": None}
                for s in result.samples]
        for e in result.excluded:
            folder = Path(os.path.normpath(image_dir(root, e.split).absolute()))
            file = Path(os.path.normpath(folder / e.filename))
            if e.reason == "bad_image" or not file.is_relative_to(folder) or not inside(file, root):
                continue  # no image, or a path outside the image folder: never read it
            label = result.rules.normalize(e.raw_label) if e.reason == "bad_chars" else None
            rows.append({"file": file, "split": e.split, "label": label,
                         "original": e.raw_label.strip()[:MAX_LABEL_LENGTH] or None,
                         "status": STATUS_OF_REASON[e.reason],
                         "note": e.detail or None})
        return root, rows, result.summary()
    root = path
    files = image_files(root, inside_only=False)
    outside = [f for f in files if not inside(f, root)]
    files = [f for f in files if inside(f, root)]
    if not files:
        raise CatalogError(f"{path}: no Kaggle CSV and no images (.jpg, .png, ...) found"
                           + (f" ({len(outside)} link(s) to images outside the folder refused)" if outside else ""))
    rows = [{"file": f.absolute(), "split": POOL_SPLIT, "label": None, "original": None, "status": "unlabelled",
             "note": None} for f in files]
    return root, rows, {"root": str(root), "rows": len(rows), "usable": 0, "unlabelled": len(rows),
                        "links_outside_refused": len(outside)}


def import_dataset(
    settings: Settings,
    path: str | Path,
    name: str,
    source: str = "kaggle",
    rules: LabelRules | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Load a folder/zip into dataset ``name`` (created if new). Images outside the data directory are copied
    into it, so every stored path is relative to the data directory. ``rules``: how labels are read (None: the data's
    own ``label_rules.json``, else the Kaggle defaults). Returns counts."""
    if source not in SOURCES:
        raise CatalogError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    if not name.strip():
        raise CatalogError("a dataset needs a name")
    path = Path(os.path.normpath(Path(path).absolute()))
    if not path.exists():
        raise CatalogError(f"{path}: no such file or folder")
    root, rows, summary = _rows(path, rules, settings.data_dir / "extracted")
    summary.setdefault("label_rules", asdict(rules or LabelRules()))
    inside = root.is_relative_to(settings.data_dir)
    dest_root = root if inside else settings.data_dir / "datasets" / slug(name)

    with session(settings, write=True) as s:
        ds = s.scalar(select(Dataset).where(Dataset.name == name))
        created = ds is None
        if created:
            ds = Dataset(name=name, source=source, root=settings.relative(dest_root), import_summary=summary)
            s.add(ds)
            s.flush()
        dataset_id = ds.id
    known = set(_all_hashes(settings))
    counts: Counter[str] = Counter()
    pending: list[dict] = []

    def flush() -> None:
        if pending:
            shard = settings.store.pack([settings.local(row["path"]) for row in pending])  # stored before its rows
            for row in pending:
                row["shard"] = shard
            with session(settings, write=True) as s:
                s.execute(insert(Sample), pending)
            pending.clear()

    for i, row in enumerate(rows):
        if should_stop is not None and i % 200 == 0 and should_stop():
            counts["stopped_at"] = i
            break
        file: Path = row["file"]
        problem = check_image(file)
        if problem:
            counts["bad_image"] += 1
            continue
        digest = file_hash(file)
        if digest in known:
            counts["already_present"] += 1
        else:
            known.add(digest)
            target = file if inside else dest_root / file.relative_to(root)
            if not inside and not target.exists():
                link_or_copy(file, target)
            pending.append({"dataset_id": dataset_id, "path": settings.relative(target), "image_hash": digest,
                            "split": row["split"], "label": row["label"], "original_label": row["original"],
                            "status": row["status"], "note": row["note"]})
            counts["added"] += 1
            counts[f"added_{row['status']}"] += 1
            if len(pending) >= CHUNK:
                flush()
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1, len(rows))
    flush()
    if progress is not None:
        progress(len(rows), len(rows))
    if created and not counts["added"] and not counts["already_present"] and counts.get("stopped_at") is None:
        with session(settings, write=True) as s:
            s.execute(delete(Dataset).where(Dataset.id == dataset_id))
        raise CatalogError(f"{path}: no image could be read ({counts['bad_image']:,} of {len(rows):,} rows have a "
                           "missing, empty, corrupt or oversized image); no dataset was created")
    if created and not counts["added"] and counts["already_present"]:
        # the same images under another name: keep the dataset that has them, not an empty twin
        with session(settings, write=True) as s:
            s.execute(delete(Dataset).where(Dataset.id == dataset_id))
            first = next(r for r in rows if not check_image(r["file"]))
            dataset_id, name = s.execute(select(Dataset.id, Dataset.name).join(Sample)
                                         .where(Sample.image_hash == file_hash(first["file"]))).one()
    return {"dataset_id": dataset_id, "dataset": name, "rows": len(rows), "added": counts["added"],
            "already_present": counts["already_present"], "bad_image": counts["bad_image"],
            "added_by_status": {k.removeprefix("added_"): v for k, v in counts.items() if k.startswith("added_")},
            "stopped_at": counts.get("stopped_at"), "import": summary}


def _all_hashes(settings: Settings) -> list[str]:
    with session(settings) as s:
        return list(s.scalars(select(Sample.image_hash)))


def dataset_id(settings: Settings, name: str) -> int:
    with session(settings) as s:
        found = s.scalar(select(Dataset.id).where(Dataset.name == name))
    if found is None:
        raise CatalogError(f"no dataset named {name!r}")
    return found


def dataset_counts(settings: Settings) -> list[dict]:
    """Per dataset: samples per status and per split, and how many labels were corrected."""

    with session(settings) as s:
        datasets = s.scalars(select(Dataset).order_by(Dataset.id)).all()
        by_status = s.execute(select(Sample.dataset_id, Sample.status, func.count()).group_by(Sample.dataset_id, Sample.status))
        by_split = s.execute(select(Sample.dataset_id, Sample.split, func.count()).where(Sample.status == "ok")
                             .group_by(Sample.dataset_id, Sample.split))
        corrected = s.execute(select(Sample.dataset_id, func.count(func.distinct(LabelEdit.sample_id)))
                              .join(LabelEdit, LabelEdit.sample_id == Sample.id).group_by(Sample.dataset_id))
        status = {}
        for d, st, n in by_status:
            status.setdefault(d, {})[st] = n
        splits = {}
        for d, sp, n in by_split:
            splits.setdefault(d, {})[sp] = n
        edited = dict(corrected.all())
    return [{"id": d.id, "name": d.name, "source": d.source, "root": d.root, "created_at": d.created_at,
             "status": status.get(d.id, {}), "usable_by_split": splits.get(d.id, {}),
             "usable": status.get(d.id, {}).get("ok", 0), "corrected": edited.get(d.id, 0)} for d in datasets]


def training_items(settings: Settings, datasets: list[str], splits: list[str] | None = None) -> list[TrainingItem]:
    """The current labels of usable samples (status ok) in these datasets and splits, by sample id.
    ``splits`` None means every split except test."""
    ids = [dataset_id(settings, n) for n in datasets]
    stmt = select(Sample.id, Sample.path, Sample.label, Sample.split, Sample.shard).where(
        Sample.dataset_id.in_(ids), Sample.status == "ok", Sample.label.is_not(None))
    stmt = stmt.where(Sample.split.in_(splits)) if splits else stmt.where(Sample.split != "test")
    with session(settings) as s:
        rows = s.execute(stmt.order_by(Sample.id)).all()
    pull_images(settings, rows)  # a worker on another machine: its images come from the store
    return [TrainingItem(r.id, settings.local(r.path), r.label, r.split) for r in rows]


def pool_items(settings: Settings, datasets: list[str]) -> list[TrainingItem]:
    """The samples of these datasets that have no label yet (status unlabelled): a self-training pool."""
    ids = [dataset_id(settings, n) for n in datasets]
    stmt = select(Sample.id, Sample.path, Sample.split, Sample.shard).where(
        Sample.dataset_id.in_(ids), Sample.status == "unlabelled", Sample.label.is_(None))
    with session(settings) as s:
        rows = s.execute(stmt.order_by(Sample.id)).all()
    pull_images(settings, rows)
    return [TrainingItem(r.id, settings.local(r.path), None, r.split) for r in rows]


def pull_images(settings: Settings, rows) -> None:
    """Bring the images of these rows (each with ``path`` and ``shard``) to this machine, from their shards."""
    settings.store.pull([r.path for r in rows], shards={r.path: r.shard for r in rows if r.shard})


def image_file(settings: Settings, path: str) -> Path:
    """A sample's image on this machine, pulled from its shard first when only the store has it (the dashboard)."""
    local = settings.local(path)
    if local.exists() or not settings.store.remote:
        return local
    with session(settings) as s:
        shard = s.scalar(select(Sample.shard).where(Sample.path == path).limit(1))
    settings.store.pull([path], shards={path: shard} if shard else None)
    return local


def data_hash(items: list[TrainingItem]) -> str:
    """SHA-256 of the (sample id, label) pairs: what a job trained on, exactly."""
    h = hashlib.sha256()
    for it in sorted(items, key=lambda t: t.sample_id):
        h.update(f"{it.sample_id}\t{it.label}\n".encode())
    return h.hexdigest()


def kaggle_csv(settings: Settings, dataset: str, split: str) -> str:
    """The current labels of one split as a Kaggle CSV (FILENAME,IDENTITY): unreadable and empty samples as
    ``UNREADABLE``/``EMPTY``, unlabelled ones blank."""
    ds = dataset_id(settings, dataset)
    with session(settings) as s:
        rows = s.execute(select(Sample.path, Sample.label, Sample.status)
                         .where(Sample.dataset_id == ds, Sample.split == split).order_by(Sample.id)).all()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["FILENAME", "IDENTITY"])
    for path, label, status in rows:
        w.writerow([os.path.basename(path), KAGGLE_TEXT.get(status, label or "")])
    return buf.getvalue()


def export_kaggle(settings: Settings, dataset: str, out_dir: str | Path) -> list[Path]:
    """Write ``written_name_{split}_v2.csv`` for every split of the dataset into ``out_dir``, and its edit history
    ``label_edits.csv``."""
    ds = dataset_id(settings, dataset)
    with session(settings) as s:
        splits = list(s.scalars(select(Sample.split).where(Sample.dataset_id == ds).distinct()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in sorted(sp for sp in splits if sp in SPLITS):
        target = csv_path(out, split)
        target.write_text(kaggle_csv(settings, dataset, split), encoding="utf-8")
        written.append(target)
    target = out / "label_edits.csv"  # who changed what, when
    target.write_text(edits_csv(settings, dataset), encoding="utf-8")
    return [*written, target]


def edits_csv(settings: Settings, dataset: str) -> str:
    """Every label edit of a dataset, oldest first, as CSV: when, which sample and file, from what to what, by whom."""
    import csv
    import io
    import os

    ds = dataset_id(settings, dataset)
    with session(settings) as s:
        rows = s.execute(select(LabelEdit, Sample.path).join(Sample, Sample.id == LabelEdit.sample_id)
                         .where(Sample.dataset_id == ds).order_by(LabelEdit.id)).all()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["edit_id", "time_utc", "sample_id", "FILENAME", "old_label", "new_label", "old_status", "new_status",
                "source", "user", "reverts_edit"])
    for e, path in rows:
        w.writerow([e.id, e.created_at.isoformat(timespec="seconds"), e.sample_id, os.path.basename(path),
                    e.old_label or "", e.new_label or "", e.old_status, e.new_status, e.source, e.user_name or "",
                    e.reverts_id or ""])
    return buf.getvalue()


def browse(settings: Settings, dataset: int, split: str | None = None, status: str | None = None, text: str = "",
           page: int = 0, page_size: int = 24) -> tuple[list[dict], int]:
    """One page of a dataset's samples (id, path, split, label, original label, status, note) and the total."""
    cond = [Sample.dataset_id == dataset]
    if split:
        cond.append(Sample.split == split)
    if status:
        cond.append(Sample.status == status)
    if text.strip():
        cond.append(Sample.label.like(f"%{text.strip().upper()}%"))
    with session(settings) as s:
        total = s.scalar(select(func.count()).select_from(Sample).where(*cond)) or 0
        rows = s.execute(select(Sample.id, Sample.path, Sample.split, Sample.label, Sample.original_label, Sample.status,
                                Sample.note).where(*cond).order_by(Sample.id).limit(page_size).offset(page * page_size))
        return [dict(r._mapping) for r in rows], total


def splits_of(settings: Settings, dataset: int) -> list[str]:
    with session(settings) as s:
        return sorted(s.scalars(select(Sample.split).where(Sample.dataset_id == dataset).distinct()))


DRAWN_DATASET = "drawn"


def add_drawn_sample(settings: Settings, png: bytes, label: str, user: str | None = None,
                     rules: LabelRules = LabelRules(charset="any")) -> int:
    """Store a drawing from the dashboard as a new training sample of the ``drawn`` dataset; returns its id.
    ``rules``: how the label is normalised (the Draw page keeps lower case for a model whose set has it)."""
    try:
        text = rules.validate(label)
    except LabelError as exc:
        raise CatalogError(str(exc)) from None
    digest = hashlib.sha256(png).hexdigest()
    folder = settings.data_dir / "datasets" / DRAWN_DATASET / "train_v2" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"DRAWN_{digest[:16]}.png"
    with session(settings, write=True) as s:
        ds = s.scalar(select(Dataset).where(Dataset.name == DRAWN_DATASET))
        if ds is None:
            ds = Dataset(name=DRAWN_DATASET, source="drawn", root=settings.relative(folder.parent.parent),
                         import_summary={"label_rules": asdict(LabelRules(upper=rules.upper, charset="any"))})
            s.add(ds)
            s.flush()
        existing = s.scalar(select(Sample.id).where(Sample.image_hash == digest))
        if existing is not None:
            raise CatalogError(f"this drawing is already sample {existing}")
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(png)
            tmp.replace(target)
        settings.push([target])  # a worker on another machine trains on it
        sample = Sample(dataset_id=ds.id, path=settings.relative(target), image_hash=digest, split="train", label=text,
                        original_label=text, status="ok", note=f"drawn by {user}" if user else "drawn")
        s.add(sample)
        s.flush()
        return sample.id
