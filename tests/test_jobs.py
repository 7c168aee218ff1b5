"""Jobs with real worker processes and real databases (SQLite file and PostgreSQL): train, evaluate, cancel,
kill -9, two workers, corrections while training, bad input.

What differs between the backends (claiming a job, concurrent writes while a job trains, refusals) runs on both; a
flow that only goes through the queue's common SQL (train then evaluate, cancel, kill -9) runs on one of them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from db import catalog, corrections
from db.engine import session
from db.models import Job, JobMetric, LabelEdit, Model, Prediction
from jobs import queue
from jobs.params import ParamsError
from tests.conftest import PY, ROOT, process_state, wait_for

TRAIN = {"batch_size": 16, "log_every": 2, "augment": False}


def _job(settings, job_id) -> Job:
    with session(settings) as s:
        return s.get(Job, job_id)


def _metric_count(settings, job_id) -> int:
    with session(settings) as s:
        return s.scalar(select(func.count()).select_from(JobMetric).where(JobMetric.job_id == job_id))


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "jobs", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=os.environ.copy())


def _train(settings, epochs: int, **config) -> int:
    return queue.submit(settings, "train", {"datasets": ["synth"], "config": {**TRAIN, "epochs": epochs, **config}})


@pytest.mark.parametrize("settings", ["postgresql"], indirect=True)
def test_worker_trains_then_evaluates(settings, synth_dir, workers):
    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    out = _cli("submit", "train", "--dataset", "synth", "--epochs", "2", "--batch-size", "16", "--no-augment")
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout.strip().splitlines()[-1])
    workers()
    # metric rows appear while the job is still running
    wait_for(lambda: _job(settings, job_id).status == "running" and _metric_count(settings, job_id) > 0, 90,
             "metrics of a running job")
    wait_for(lambda: _job(settings, job_id).status in ("succeeded", "failed"), 120, "the training job to finish")
    status = json.loads(_cli("status", str(job_id), "--json").stdout)
    assert status["status"] == "succeeded", status["error"]
    assert status["progress"] == 1.0 and {"train_loss", "val_cer", "val_exact_match", "lr"} <= set(status["metrics"])
    assert status["data_count"] == 200 and len(status["data_hash"]) == 64
    fields = status["progress_data"]  # the kind's TrainProgress, as the Train page shows it
    assert fields["epoch"] == fields["epochs"] == 2 and 0 <= fields["val_cer"] <= 1 and fields["step"] > 0
    kinds = {c["kind"] for c in status["checkpoints"]}
    assert kinds == {"best", "last"}
    best = next(c for c in status["checkpoints"] if c["kind"] == "best")
    assert settings.resolve(best["path"]).exists()
    assert settings.resolve(best["path"] + ".onnx").is_file()  # made by the job: its CPU readers run onnxruntime
    assert "succeeded" in _cli("log", str(job_id)).stdout

    out = _cli("submit", "evaluate", "--model", str(best["model_id"]), "--dataset", "synth", "--split", "train",
               "--no-report")
    eval_id = int(out.stdout.strip().splitlines()[-1])
    wait_for(lambda: _job(settings, eval_id).status in ("succeeded", "failed"), 90, "the evaluation job")
    job = _job(settings, eval_id)
    assert job.status == "succeeded", job.error
    with session(settings) as s:
        n = s.scalar(select(func.count()).select_from(Prediction).where(Prediction.model_id == best["model_id"]))
    assert n == 200 == job.result["n"]
    assert job.progress_data == {"done": 200, "total": 200, "unit": "image"}
    assert (job.result["decoder"], job.result["engine"]) == ("greedy", "onnx")
    # evaluating again replaces the model's predictions instead of adding to them; this time with the names LM
    again = queue.submit(settings, "evaluate", {"model": best["model_id"], "dataset": "synth", "split": "train",
                                                "report": False, "lm": True})
    wait_for(lambda: _job(settings, again).status in ("succeeded", "failed"), 120, "the second evaluation")
    assert _job(settings, again).status == "succeeded", _job(settings, again).error
    assert _job(settings, again).result["decoder"] == "beam20+names LM"
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(Prediction)) == 200
        assert s.scalar(select(func.count()).select_from(Prediction).where(Prediction.job_id == again)) == 200


@pytest.mark.parametrize("settings", ["postgresql"], indirect=True)
def test_cancel_stops_a_running_job(settings, synth_dir, workers):
    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    job_id = _train(settings, epochs=500)
    workers()
    wait_for(lambda: _metric_count(settings, job_id) > 0, 90, "the job to start training")
    wait_for(lambda: _has_checkpoint(settings, job_id), 60,
             "a first checkpoint")
    out = _cli("cancel", str(job_id))
    assert out.returncode == 0 and "stop requested" in out.stdout
    wait_for(lambda: _job(settings, job_id).status == "cancelled", 15, "the job to be cancelled")
    last = settings.resolve(f"runs/job-{job_id}/last.pt")
    from ocr.recognize import Recognizer

    assert Recognizer(last).read([next((synth_dir / "train_v2" / "train").glob("*.jpg"))])  # still usable
    assert "queued" not in _cli("cancel", str(job_id)).stdout


def _has_checkpoint(settings, job_id) -> bool:
    with session(settings) as s:
        return bool(s.scalar(select(func.count()).select_from(Model).where(Model.job_id == job_id)))


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_kill_9_worker_stops_its_child_and_the_job_resumes(settings, synth_dir, workers):
    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    job_id = _train(settings, epochs=4)
    worker = workers()
    wait_for(lambda: _has_checkpoint(settings, job_id), 90, "a first checkpoint")
    child = _job(settings, job_id).pid
    assert child and process_state(child)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    wait_for(lambda: process_state(child) is None, 10, "the orphaned job process to stop")

    # a new worker marks it interrupted (if the dying child did not already)
    workers("--once")
    wait_for(lambda: _job(settings, job_id).status == "interrupted", 30, "the job to be marked interrupted")
    assert "interrupted" in _job(settings, job_id).error
    out = _cli("resume", str(job_id))
    assert out.returncode == 0, out.stderr
    workers()
    wait_for(lambda: _job(settings, job_id).status in ("succeeded", "failed"), 180, "the resumed job")
    job = _job(settings, job_id)
    assert job.status == "succeeded", job.error
    assert job.params["resume"] is True and job.attempts == 2 and job.result["epochs"] == 4
    with session(settings) as s:
        epochs = s.scalars(select(JobMetric.epoch).where(JobMetric.job_id == job_id, JobMetric.kind == "epoch",
                                                         JobMetric.name == "val_cer").order_by(JobMetric.epoch)).all()
    assert epochs == list(range(1, 5))  # each epoch once: the replayed part was not stored twice


def test_two_workers_run_each_job_exactly_once(settings, synth_dir, workers, tmp_path):
    folders = []
    images = sorted((synth_dir / "train_v2" / "train").glob("*.jpg"))
    for i in range(6):
        folder = tmp_path / f"pool{i}"
        folder.mkdir()
        for f in images[i * 3:(i + 1) * 3]:
            shutil.copy(f, folder / f.name)
        folders.append(folder)
    ids = [queue.submit(settings, "import", {"path": str(f), "name": f"pool{i}", "source": "upload"})
           for i, f in enumerate(folders)]
    a, b = workers("--once"), workers("--once")
    a.wait(timeout=120)
    b.wait(timeout=120)
    jobs = [_job(settings, i) for i in ids]
    assert [j.status for j in jobs] == ["succeeded"] * 6
    assert all(j.attempts == 1 for j in jobs)
    for j in jobs:
        assert settings.resolve(j.log_path).read_text().count(f"job {j.id}: import") == 1
    assert catalog.dataset_counts(settings) and sum(d["status"].get("unlabelled", 0)
                                                    for d in catalog.dataset_counts(settings)) == 18


EDITOR = """
import sys
from db import catalog, corrections
from db.settings import Settings
settings = Settings.from_env()
items = catalog.training_items(settings, ["synth"])
for i in range(500):
    it = items[i % len(items)]
    corrections.correct_label(settings, it.sample_id, "EDIT" + "ABC"[i // len(items)] + it.label[:3], user="bot")
print("done")
"""


def test_corrections_while_training_are_all_kept_and_used_next(settings, synth_dir, workers):
    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    first = _train(settings, epochs=500)  # still training when the edits are done; then stopped
    workers()
    wait_for(lambda: _metric_count(settings, first) > 0, 90, "the first job to train")
    editor = subprocess.run([PY, "-c", EDITOR], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=os.environ.copy())
    assert editor.returncode == 0 and editor.stdout.strip() == "done", editor.stderr[-2000:]
    assert "locked" not in editor.stderr
    assert _job(settings, first).status == "running"  # the edits went in while the job was training
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(LabelEdit)) == 500
    wait_for(lambda: _has_checkpoint(settings, first), 60, "a first checkpoint to fine-tune from")
    assert _cli("cancel", str(first)).returncode == 0
    wait_for(lambda: _job(settings, first).status == "cancelled", 60, "the first job to stop")

    first_job = _job(settings, first)
    assert corrections.edits_since(settings, first_job.data_read_at) == 200  # samples changed since it read its data
    with session(settings) as s:
        best = s.scalar(select(Model.id).where(Model.job_id == first, Model.kind == "best"))
    second = queue.submit(settings, "train", {"datasets": ["synth"], "init_model": best,
                                              "config": {**TRAIN, "epochs": 1}})  # fine-tune on the corrections
    wait_for(lambda: _job(settings, second).status in ("succeeded", "failed"), 120, "the second job")
    job = _job(settings, second)
    assert job.status == "succeeded", job.error
    current = catalog.training_items(settings, ["synth"])
    assert job.data_hash == catalog.data_hash(current) != _job(settings, first).data_hash
    assert sum(it.label.startswith("EDIT") for it in current) == 200  # every sample was corrected at least once


def test_bad_jobs_are_refused_and_nothing_is_written(settings, synth_dir):
    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    bad = [
        ("train", {"datasets": ["synth"], "config": {"epochs": -1}}, "positive"),
        ("train", {"datasets": ["synth"], "config": {"epoch": 3}}, "unknown parameter"),
        ("train", {"datasets": ["synth"], "config": {"lr": "fast"}}, "not a valid"),
        ("train", {"datasets": ["nope"]}, "no dataset named"),
        ("train", {"datasets": ["synth"], "init_model": 99}, "no model with id"),
        ("evaluate", {"model": 1, "dataset": "synth", "split": "dev"}, "unknown split"),
        ("import", {"path": str(settings.data_dir / "nonexistent"), "name": "x"}, "no such file"),
        ("import", {"path": "/nonexistent/folder", "name": "x"}, "outside the folders this server imports from"),
        ("synth", {"n": 0, "name": "x"}, "between"),
        ("bake", {}, "unknown job kind"),
    ]
    for kind, values, message in bad:
        with pytest.raises((ParamsError, ValueError), match=message):
            queue.submit(settings, kind, values)
    out = _cli("submit", "train", "--dataset", "synth", "--epochs", "0")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "error:" in out.stderr
    assert _cli("cancel", "12345").stderr.strip() == "error: no job with id 12345"
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_help_of_every_jobs_command():
    for args in (["--help"], ["submit", "train", "--help"], ["submit", "import", "--help"], ["status", "--help"]):
        out = subprocess.run([PY, "-m", "jobs", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "usage" in out.stdout
    out = subprocess.run([sys.executable, "-m", "jobs.worker", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert "--once" in out.stdout


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_progress_is_its_kinds_declared_fields_never_text_read_back(settings):
    from dataclasses import is_dataclass

    from jobs.context import Count, JobContext
    from jobs.kinds import KINDS
    from jobs.kinds.train import TrainProgress

    assert all(is_dataclass(k.progress) and k.progress.__dataclass_params__.frozen for k in KINDS.values())
    assert KINDS["train"].progress is TrainProgress and KINDS["predict"].progress is Count
    job_id = queue.submit(settings, "synth", {"n": 5, "name": "s"})
    ctx = JobContext(settings, job_id, {}, progress_type=TrainProgress)
    with pytest.raises(TypeError, match="TrainProgress, not Count"):
        ctx.progress(0.5, "epoch 1/3", Count(1, 3, "epoch"))
    ctx.progress(0.5, "epoch 1/3", TrainProgress(1, 3, step=40, loss=2.5, eta_min=1.5), force=True)
    ctx.progress(0.6, "epoch 2/3")  # within half a second of the last: not stored ...
    ctx.progress(0.7)
    assert queue.job_status(settings, job_id)["progress_data"] == {
        "epoch": 1, "epochs": 3, "step": 40, "loss": 2.5, "val_exact": None, "val_cer": None, "eta_min": 1.5}
    ctx.progress_type = Count
    ctx.progress(0.9, "read 9 of 9", Count(9, 9, "image"))  # ... but the last of a count always is
    status = queue.job_status(settings, job_id)
    assert status["progress_data"] == {"done": 9, "total": 9, "unit": "image"} and status["message"] == "read 9 of 9"


def test_a_worker_started_from_python_is_seen_alive(settings):
    from jobs.control import ensure_worker, worker_alive

    assert not worker_alive(settings)
    proc = ensure_worker(settings, device="cpu")
    try:
        wait_for(lambda: worker_alive(settings), 30, "the background worker's heartbeat")
        assert ensure_worker(settings) is None  # one is alive: no second one
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_job_that_fails_at_run_time_says_why(settings, synth_dir, learned, workers):
    from db.registry import register_checkpoint

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    model_id = register_checkpoint(settings, learned[0], "best", name="learned")
    job_id = queue.submit(settings, "evaluate", {"model": model_id, "dataset": "synth", "split": "test"})
    workers("--once").wait(timeout=60)
    job = _job(settings, job_id)
    assert job.status == "failed" and "no usable sample in split 'test'" in job.error
    assert "no usable sample" in _cli("log", str(job_id)).stdout
