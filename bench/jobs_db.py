"""Database and job-queue figures: claim time, submit-to-running with a real worker, the cost of storing training
metrics per step, and the review query on 100,000 prediction rows.

    python -m bench.jobs_db [--url postgresql+psycopg://...] [--rows 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, select

from bench.common import ROOT, emit
from db.models import WAITING, JobStatus


def _settings(url: str | None, data_dir: Path):
    from db.settings import Settings

    return Settings(data_dir=data_dir, database_url=url or f"sqlite:///{data_dir / 'hwr.db'}",
                    import_roots=(data_dir.parent,))


def bench_claim(settings, n: int = 200) -> None:
    from db.engine import session
    from db.models import Job
    from jobs import queue

    with session(settings, write=True) as s:
        s.execute(insert(Job), [{"kind": "import", "params": {"path": "/x", "name": f"d{i}"}} for i in range(n)])
    times = []
    for _ in range(n):
        t = time.perf_counter()
        job = queue.claim(settings, "bench", "cpu")
        times.append(time.perf_counter() - t)
        queue.finish(settings, job.id, JobStatus.SUCCEEDED)
    emit("jobs.claim", backend=settings.database_url.split(":")[0], n=n, p50_ms=round(statistics.median(times) * 1e3, 2),
         p95_ms=round(sorted(times)[int(n * 0.95)] * 1e3, 2))


def bench_worker_start(settings, folder: Path, n: int = 5) -> None:
    """Submit -> running (the worker's claim, with a 0.2 s poll) and running -> finished for a tiny import job
    (mostly the job process starting: Python, SQLAlchemy)."""
    from jobs import queue
    from jobs.queue import as_utc

    env = {**os.environ, "HWR_DATA_DIR": str(settings.data_dir), "HWR_DATABASE_URL": settings.database_url}
    worker = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--poll", "0.2"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        waits, runs = [], []
        for i in range(n):
            job_id = queue.submit(settings, "import", {"path": str(folder), "name": f"pool{i}", "source": "upload"})
            while (st := queue.job_status(settings, job_id))["status"] in WAITING:
                time.sleep(0.02)
            from db.engine import session
            from db.models import Job

            with session(settings) as s:
                job = s.get(Job, job_id)
            waits.append((as_utc(job.started_at) - as_utc(job.created_at)).total_seconds())
            runs.append((as_utc(job.finished_at) - as_utc(job.started_at)).total_seconds())
            assert st["status"] == JobStatus.SUCCEEDED, st["error"]
        emit("jobs.start", backend=settings.database_url.split(":")[0], n=n,
             submit_to_running_s=round(statistics.median(waits), 3),
             running_to_done_tiny_job_s=round(statistics.median(runs), 3), worker_poll_s=0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def bench_metric_overhead(settings, steps_epochs: int = 3) -> None:
    """Train the small preset on 2,000 synthetic images with the database callback, timing the callback itself."""
    from bench.common import synthetic
    from db.engine import session
    from db.models import Job
    from jobs.context import JobContext
    from jobs.kinds.train import DbCallback
    from ocr.data.datasets import holdout_split, import_kaggle
    from ocr.training.loop import TrainConfig, fit

    with session(settings, write=True) as s:
        job = Job(kind="train", params={}, status=JobStatus.RUNNING)
        s.add(job)
        s.flush()
        job_id = job.id
    samples = import_kaggle(synthetic()).samples[:2000]
    train, val = holdout_split(samples, 0.05, 0)
    spent = {"cb": 0.0, "steps": 0}

    class Timed(DbCallback):
        def on_step(self, m):
            t = time.perf_counter()
            super().on_step(m)
            spent["cb"] += time.perf_counter() - t
            spent["steps"] += 1

        def on_epoch(self, m):
            t = time.perf_counter()
            super().on_epoch(m)
            spent["cb"] += time.perf_counter() - t

    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        fit(train, val, out, TrainConfig(epochs=steps_epochs, log_every=1), callback=Timed(JobContext(settings, job_id, {})),
            progress=False)
        total = time.perf_counter() - t
    emit("jobs.metric_overhead", backend=settings.database_url.split(":")[0], steps=spent["steps"],
         callback_ms_per_step=round(spent["cb"] / spent["steps"] * 1e3, 3), training_s=round(total, 1),
         overhead_percent=round(spent["cb"] / total * 100, 3), note="every step logged (log_every=1), buffered writes")


def fill_predictions(settings, rows: int, image_path: str | None = None) -> tuple[int, float]:
    """A dataset of ``rows`` samples and one model's prediction for each (30 % wrong): (model id, seconds)."""
    from db.engine import session
    from db.models import Dataset, Model, Prediction, Sample

    rng = random.Random(0)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    with session(settings, write=True) as s:
        ds = Dataset(name="bench", source="synthetic", root="datasets/bench")
        s.add(ds)
        s.flush()
        model = Model(name="bench", path="runs/bench/best.pt", kind="best", is_best=True)
        s.add(model)
        s.flush()
        ds_id, model_id = ds.id, model.id
    t = time.perf_counter()
    chunk = 20_000
    for start in range(0, rows, chunk):
        samples, preds = [], []
        for i in range(start, min(rows, start + chunk)):
            label = "".join(rng.choice(letters) for _ in range(rng.randint(3, 12)))
            wrong = rng.random() < 0.3
            text = label[:-1] if wrong else label
            samples.append({"id": i + 1, "dataset_id": ds_id, "path": image_path or f"datasets/bench/{i}.jpg",
                            "image_hash": f"{i:064x}", "split": "validation", "label": label, "original_label": label,
                            "status": "ok"})
            preds.append({"model_id": model_id, "sample_id": i + 1, "split": "validation", "text": text,
                          "text_length": len(text), "confidence": rng.random(), "label": label,
                          "edit_distance": int(wrong), "correct": not wrong, "label_log_prob": -rng.random() * 10,
                          "label_error_score": rng.random() * 10 if wrong else None})
        with session(settings, write=True) as s:
            s.execute(insert(Sample), samples)
            s.execute(insert(Prediction), preds)
    return model_id, time.perf_counter() - t


def bench_review(settings, rows: int) -> None:
    from db.engine import session
    from db.review import ReviewQuery, review_page

    model_id, fill = fill_predictions(settings, rows)
    if settings.database_url.startswith("postgresql"):
        with session(settings, write=True) as s:
            s.execute(select(1))
            s.connection().exec_driver_sql("ANALYZE")
    queries = {
        "wrong_lowest_confidence": ReviewQuery(model_id=model_id, split="validation"),
        "wrong_label_error_rank": ReviewQuery(model_id=model_id, split="validation", sort="label_error"),
        "text_length_confidence_filter": ReviewQuery(model_id=model_id, split="validation", text="AB", min_length=4,
                                                     max_length=9, min_confidence=0.2, max_confidence=0.9,
                                                     sort="highest_edit_distance"),
        "all_rows_page_100": ReviewQuery(model_id=model_id, only_wrong=False, sort="sample"),
    }
    for name, q in queries.items():
        times = []
        for page in range(12):
            t = time.perf_counter()
            page_rows, total = review_page(settings, q, page=page * 10, page_size=50)
            times.append(time.perf_counter() - t)
        emit("review.query", backend=settings.database_url.split(":")[0], rows=rows, query=name, total=total,
             page_rows=len(page_rows), p50_ms=round(statistics.median(times[2:]) * 1e3, 1),
             max_ms=round(max(times[2:]) * 1e3, 1), fill_s=round(fill, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    from db.engine import dispose_engines

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "pool"
        folder.mkdir()
        from bench.common import synthetic

        for f in sorted((synthetic() / "train_v2" / "train").glob("*.jpg"))[:3]:
            (folder / f.name).write_bytes(f.read_bytes())
        for part, fn in (("claim", bench_claim), ("start", lambda st: bench_worker_start(st, folder)),
                         ("metrics", bench_metric_overhead), ("review", lambda st: bench_review(st, args.rows))):
            if part == "metrics" and args.skip_training:
                continue
            data_dir = tmp / part
            data_dir.mkdir()
            fn(_settings(args.url, data_dir))
            dispose_engines()
            if args.url:  # one PostgreSQL database: start each part from empty tables
                from sqlalchemy import create_engine, text

                with create_engine(args.url).begin() as c:
                    c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))


if __name__ == "__main__":
    main()
