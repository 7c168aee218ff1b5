"""The database on SQLite and PostgreSQL: schema, idempotent import, the correction loop, review and label errors."""

from __future__ import annotations

import csv
import shutil

import pytest
from sqlalchemy import func, select, text

from db import catalog, corrections, registry
from db.corrections import CorrectionError
from db.engine import get_engine, migrate, session
from db.models import Dataset, LabelEdit, Prediction, Sample
from db.review import ReviewQuery, label_errors, review_page
from tests.conftest import import_pool


def _import_synth(settings, synth_dir, name="synth"):
    return catalog.import_dataset(settings, synth_dir, name, "synthetic")


def test_schema_is_created_and_kept_at_the_newest_revision(settings):
    engine = get_engine(settings)
    with engine.connect() as c:
        version = c.execute(text("select version_num from alembic_version")).scalar()
        if engine.dialect.name == "sqlite":
            assert c.execute(text("pragma journal_mode")).scalar() == "wal"
            assert c.execute(text("pragma foreign_keys")).scalar() == 1
    assert version == "0008"
    migrate(engine)  # a second start changes nothing
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(Dataset)) == 0


def test_a_database_of_the_first_revision_is_upgraded_keeping_its_rows(tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from db.engine import MIGRATIONS, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with create_engine(url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("insert into workers (id, host, pid, device, started_at, heartbeat_at) "
                          "values ('w', 'h', 1, 'cpu', '2026-11-01', '2026-11-01')"))
    engine = make_engine(url)
    migrate(engine)
    with engine.connect() as c:
        assert c.execute(text("select version_num from alembic_version")).scalar() == "0008"
        assert c.execute(text("select id, devices, free from workers")).all() == [("w", None, None)]
        assert c.execute(text("select ranks, devices from jobs")).all() == []  # the columns of jobs on several devices
        assert c.execute(text("select hard_to_read from label_issues")).all() == []
    engine.dispose()


def test_real_import_keeps_every_row_reason_and_is_idempotent(settings, real_data):
    first = catalog.import_dataset(settings, real_data, "kaggle-sample", "kaggle")
    assert first["added"] == 1000 and first["added_by_status"] == {"ok": 995, "unlabelled": 1, "unreadable": 1, "empty": 3}
    again = catalog.import_dataset(settings, real_data, "kaggle-sample", "kaggle")
    assert again["added"] == 0 and again["already_present"] == 1000
    other_name = catalog.import_dataset(settings, real_data, "same-images", "kaggle")
    assert other_name["added"] == 0 and other_name["dataset"] == "kaggle-sample"
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(Dataset)) == 1
        sample = s.scalar(select(Sample).where(Sample.status == "unreadable"))
        assert sample.label is None and sample.original_label == "UNREADABLE"
        paths = s.scalars(select(Sample.path)).all()
    assert all(not p.startswith("/") for p in paths)  # copied under the data directory, stored relative to it
    assert all(settings.resolve(p).exists() for p in paths[:20])
    counts = catalog.dataset_counts(settings)[0]
    assert counts["usable"] == 995 and counts["status"]["empty"] == 3


def test_a_folder_of_images_without_csv_is_an_unlabelled_pool(settings, synth_dir, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for f in sorted((synth_dir / "train_v2" / "train").glob("*.jpg"))[:7]:
        shutil.copy(f, pool / f.name)
    (pool / "broken.jpg").write_bytes(b"not a jpeg")
    result = catalog.import_dataset(settings, pool, "pool", "upload")
    assert result["added"] == 7 and result["bad_image"] == 1
    with session(settings) as s:
        assert set(s.scalars(select(Sample.status))) == {"unlabelled"}


def test_corrections_undo_history_and_training_data(settings, synth_dir, tmp_path):
    _import_synth(settings, synth_dir)
    items = catalog.training_items(settings, ["synth"])
    before = catalog.data_hash(items)
    sid, old = items[0].sample_id, items[0].label

    r = corrections.correct_label(settings, sid, "  jean-pierre  d'arc ", user="ana")
    assert r["changed"] and r["label"] == "JEAN-PIERRE D'ARC"
    corrections.set_status(settings, items[1].sample_id, "unreadable", user="ana")
    after = catalog.training_items(settings, ["synth"])
    assert len(after) == len(items) - 1
    assert {it.sample_id: it.label for it in after}[sid] == "JEAN-PIERRE D'ARC"
    assert catalog.data_hash(after) != before
    assert corrections.edits_since(settings, None) == 2

    # nothing is written for a bad label or an unknown sample
    with pytest.raises(CorrectionError, match="no character set allows"):
        corrections.correct_label(settings, sid, "JOSÉ\x07")
    with pytest.raises(CorrectionError, match="empty"):
        corrections.correct_label(settings, sid, "   ")
    with pytest.raises(CorrectionError, match="no sample with id"):
        corrections.correct_label(settings, 10**9, "PAUL")
    with pytest.raises(CorrectionError, match="no prediction"):
        corrections.accept_prediction(settings, sid, 12345)
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(LabelEdit)) == 2

    corrections.correct_label(settings, sid, "MARIE")
    assert corrections.undo_last(settings, sid)["label"] == "JEAN-PIERRE D'ARC"
    assert corrections.undo_last(settings, sid)["label"] == old
    with pytest.raises(CorrectionError, match="no edit to undo"):
        corrections.undo_last(settings, sid)
    assert [h["source"] for h in corrections.history(settings, sid)] == ["user", "user", "undo", "undo"]
    corrections.undo_last(settings, items[1].sample_id)
    assert catalog.data_hash(catalog.training_items(settings, ["synth"])) == before

    corrections.set_status(settings, items[2].sample_id, "excluded")
    corrections.correct_label(settings, items[3].sample_id, "LOUISE", user="ana")
    out = catalog.export_kaggle(settings, "synth", tmp_path / "export")
    rows = list(csv.DictReader(out[0].open()))
    by_name = {r["FILENAME"]: r["IDENTITY"] for r in rows}
    assert len(rows) == 200 and by_name[items[3].path.name] == "LOUISE"
    assert out[-1].name == "label_edits.csv"
    edits = list(csv.DictReader(out[-1].open()))
    assert edits[-1]["FILENAME"] == items[3].path.name and edits[-1]["new_label"] == "LOUISE"
    assert edits[-1]["user"] == "ana"
    assert len(edits) == sum(len(corrections.history(settings, it.sample_id)) for it in items[:4])


def test_label_errors_rank_the_wrong_labels_first(settings, synth_dir, learned, tmp_path):
    """A model that knows 64 images well: the 3 labels we break are the 3 top suggestions, by the model's
    probability of the given label against its own reading."""
    from ocr.data.datasets import import_kaggle

    subset = tmp_path / "subset"
    images = subset / "validation_v2" / "validation"
    images.mkdir(parents=True)
    samples = import_kaggle(synth_dir).samples[:64]
    with (subset / "written_name_validation_v2.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FILENAME", "IDENTITY"])
        for s in samples:
            shutil.copy(s.path, images / s.path.name)
            w.writerow([s.path.name, s.label])
    catalog.import_dataset(settings, subset, "memorised", "synthetic")
    model_id = registry.register_checkpoint(settings, learned[0], "best", name="learned")
    items = catalog.training_items(settings, ["memorised"], ["validation"])
    broken = {}
    for it in items[5:8]:
        wrong = it.label[:-1] if len(it.label) > 3 else it.label + "E"  # a dropped or added letter
        corrections.correct_label(settings, it.sample_id, wrong)
        broken[it.sample_id] = wrong

    from jobs.context import JobContext
    from jobs.kinds.reading import run_evaluate

    result = run_evaluate(JobContext(settings, job_id=None, params={"model": model_id, "dataset": "memorised",
                                                                    "split": "validation", "report": False}))
    assert result["n"] == 64
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(Prediction).where(Prediction.model_id == model_id)) == 64
    top = label_errors(settings, model_id, "validation", limit=3)
    assert {r["sample_id"] for r in top} == set(broken)
    assert all(r["label_error_score"] > 0 for r in top)

    # review: filtering, sorting, paging; a correction updates the stored prediction's correctness
    rows, total = review_page(settings, ReviewQuery(model_id=model_id, split="validation"), page_size=2)
    assert total >= 3 and len(rows) == 2 and rows[0]["confidence"] <= rows[1]["confidence"]
    sid = next(iter(broken))
    corrections.accept_prediction(settings, sid, model_id, user="ana")
    _, total_after = review_page(settings, ReviewQuery(model_id=model_id, split="validation"))
    assert total_after == total - 1
    everything, n_all = review_page(settings, ReviewQuery(model_id=model_id, only_wrong=False, text=broken[sid][:3]))
    assert n_all >= 1 and any(r["sample_id"] == sid for r in everything)


def test_model_assisted_labelling_of_an_unlabelled_pool(settings, synth_dir, learned, tmp_path):
    from jobs.context import JobContext
    from jobs.kinds.reading import run_predict

    pool = tmp_path / "pool"
    pool.mkdir()
    for f in sorted((synth_dir / "train_v2" / "train").glob("*.jpg"))[:7]:
        shutil.copy(f, pool / f.name)
    catalog.import_dataset(settings, pool, "pool", "upload")
    model_id = registry.register_checkpoint(settings, learned[0], "best", name="learned")
    result = run_predict(JobContext(settings, job_id=None, params={"model": model_id, "dataset": "pool"}))
    assert result["n"] == 7
    rows, total = review_page(settings, ReviewQuery(model_id=model_id, unlabelled=True))
    assert total == 7 and [r["confidence"] for r in rows] == sorted(r["confidence"] for r in rows)
    assert all(r["current_label"] is None for r in rows)
    top = next(r for r in reversed(rows) if r["text"])
    done = corrections.accept_prediction(settings, top["sample_id"], model_id, user="ana")
    assert done["status"] == "ok" and done["label"] == top["text"]
    assert review_page(settings, ReviewQuery(model_id=model_id, unlabelled=True))[1] == 6
    assert [it.sample_id for it in catalog.training_items(settings, ["pool"])] == [top["sample_id"]]


def test_label_queue_spreads_near_identical_readings(settings, learned, tmp_path):

    from sqlalchemy import select

    from db.engine import session
    from db.models import Sample
    from db.registry import register_checkpoint
    from db.review import label_queue, store_predictions

    import_pool(settings, tmp_path / "pool", "pool", 6, seed=5)
    model = register_checkpoint(settings, learned[0], "best", name="m")
    with session(settings) as s:
        ids = s.scalars(select(Sample.id).where(Sample.split == "pool").order_by(Sample.id)).all()
    readings = [("MARTIN", 0.10), ("MARTIN", 0.11), ("MARTINE", 0.12), ("DUBOIS", 0.30), ("LEA", 0.40), ("PAUL", 0.9)]
    store_predictions(settings, model, [{"model_id": model, "sample_id": i, "split": "pool", "text": t,
                                         "text_length": len(t), "confidence": c} for i, (t, c) in zip(ids, readings)])
    got, total = label_queue(settings, model, size=4)
    assert total == 6
    assert [g["text"] for g in got] == ["MARTIN", "DUBOIS", "LEA", "PAUL"]  # near-identical readings wait
    assert [g["text"] for g in label_queue(settings, model, size=6)[0]] == [
        "MARTIN", "DUBOIS", "LEA", "PAUL", "MARTIN", "MARTINE"]


def test_predict_job_stores_what_the_queue_ranks_by_and_the_queue_uses_it(settings, learned, tmp_path):
    """A pool read with a beam keeps the runner-up, the margin and an image embedding; Label next ranks by the margin
    (a close call before a low but clear reading) and pushes a near-identical image to the end of the batch."""
    import numpy as np
    from sqlalchemy import select

    from db.engine import session
    from db.models import Prediction, Sample
    from db.registry import register_checkpoint
    from db.review import label_queue, store_predictions
    from jobs.context import JobContext
    from jobs.kinds.reading import run_predict

    import_pool(settings, tmp_path / "pool", "pool", 6, seed=8)
    model = register_checkpoint(settings, learned[0], "best", name="m")
    run_predict(JobContext(settings, None, {"model": model, "dataset": "pool", "beam": 8}))
    with session(settings) as s:
        stored = s.scalars(select(Prediction).where(Prediction.model_id == model)).all()
        ids = s.scalars(select(Sample.id).where(Sample.split == "pool").order_by(Sample.id)).all()
    assert len(stored) == 6
    for p in stored:
        assert p.runner_up is not None and p.runner_up != p.text and p.margin <= p.confidence
        vector = np.frombuffer(p.embedding, dtype=np.float16).astype(np.float32)
        assert abs(float(np.linalg.norm(vector)) - 1) < 1e-2

    rng = np.random.default_rng(1)
    vectors = [rng.normal(size=16) for _ in range(5)]
    vectors.append(vectors[0] + 0.01 * rng.normal(size=16))  # the same crop twice

    def blob(v):
        return (v / np.linalg.norm(v)).astype(np.float16).tobytes()

    rows = [("ANNA", 0.95, 0.9), ("BRUNO", 0.5, 0.02), ("CELINE", 0.2, 0.15), ("DAVID", 0.6, 0.5),
            ("EMMA", 0.7, 0.6), ("XAVIER", 0.45, 0.01)]
    store_predictions(settings, model, [{"model_id": model, "sample_id": i, "split": "pool", "text": t,
                                         "text_length": len(t), "confidence": c, "margin": m, "embedding": blob(v)}
                                        for i, (t, c, m), v in zip(ids, rows, vectors)])
    got, total = label_queue(settings, model, size=6)
    assert total == 6
    assert [g["text"] for g in got] == ["XAVIER", "BRUNO", "CELINE", "DAVID", "EMMA", "ANNA"]
    vectors[5] = vectors[1] + 0.01 * rng.normal(size=16)  # now XAVIER's crop is BRUNO's
    store_predictions(settings, model, [{"model_id": model, "sample_id": ids[5], "split": "pool", "text": "XAVIER",
                                         "text_length": 6, "confidence": 0.45, "margin": 0.01,
                                         "embedding": blob(vectors[5])}])
    assert [g["text"] for g in label_queue(settings, model, size=6)[0]] == [
        "XAVIER", "CELINE", "DAVID", "EMMA", "ANNA", "BRUNO"]


def test_retrain_needs_a_model_trained_here(settings, learned):
    from db.registry import register_checkpoint
    from jobs.params import JobError
    from jobs.queue import submit_retrain

    model = register_checkpoint(settings, learned[0], "best", name="imported")
    with pytest.raises(JobError, match=f"model {model} was not trained by a job here"):
        submit_retrain(settings, model)
    with pytest.raises(JobError, match="no model with id 999"):
        submit_retrain(settings, 999)
