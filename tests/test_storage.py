"""Workers that need no shared folder: images, checkpoints, reports and logs through a storage URL, tested against a
real S3 server on 127.0.0.1 (moto's ``ThreadedMotoServer``, driven by s3fs as any S3-compatible server would be)."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from dataclasses import replace

import pytest
from sqlalchemy import select

from db import catalog
from db.engine import session
from db.models import Model
from db.registry import model_file
from db.review import ReviewQuery, review_page
from db.storage import StorageError, check_url
from jobs import queue
from ocr.recognize import Recognizer
from tests.conftest import PY, ROOT, stop_process, wait_for

BUCKET = "hwr-team"
URL = f"s3://{BUCKET}/project"


@pytest.fixture
def s3(monkeypatch):
    """A real S3 server on 127.0.0.1 with an empty bucket; its endpoint is handed to every process."""
    import boto3
    from moto.server import ThreadedMotoServer

    for var, value in (("AWS_ACCESS_KEY_ID", "team"), ("AWS_SECRET_ACCESS_KEY", "secret"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(var, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("HWR_S3_ENDPOINT", endpoint)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def _worker_once(data_dir) -> subprocess.CompletedProcess:
    """A worker on "machine B": its own, empty data directory; the same database and bucket."""
    env = {**os.environ, "HWR_DATA_DIR": str(data_dir), "HWR_STORAGE_URL": URL}
    return subprocess.run([PY, "-m", "jobs.worker", "--once", "--device", "cpu", "--poll", "0.2"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("settings", ["postgresql"], indirect=True)
def test_a_worker_without_the_images_trains_and_evaluates_through_the_bucket(settings, synth_dir, s3, tmp_path):
    a = replace(settings, storage_url=URL)  # machine A: the dashboard / CLI that imports
    catalog.import_dataset(a, synth_dir, "synth", "synthetic")
    assert a.store.fs.find(f"{BUCKET}/project/datasets") == []  # no object per image: one shard per import chunk
    (shard,) = a.store.fs.find(f"{BUCKET}/project/shards")
    with zipfile.ZipFile(a.store.fs.open(shard)) as z:
        assert len(z.namelist()) == 200 and all(n.startswith("datasets/synth/") for n in z.namelist())
    shutil.rmtree(a.data_dir / "datasets")  # A keeps nothing local: what it shows below comes from the bucket

    b = tmp_path / "machine-b"
    train = queue.submit(a, "train", {"datasets": ["synth"], "config": {"epochs": 2, "batch_size": 16,
                                                                         "augment": False}})
    worker = _worker_once(b)
    assert worker.returncode == 0, worker.stderr[-2000:]
    status = queue.job_status(a, train)
    assert status["status"] == "succeeded", status["error"]
    assert len(list((b / "datasets").rglob("*.jpg"))) == 200  # B pulled what the job reads
    assert {"train_loss", "val_cer"} <= set(status["metrics"])  # A shows B's curves (the database)
    with session(a) as s:
        best = s.scalar(select(Model).where(Model.job_id == train, Model.kind == "best"))
    assert not a.local(best.path).exists()
    assert model_file(a, best.id).read_bytes() == (b / best.path).read_bytes()  # B's checkpoint, read on A
    assert Recognizer(model_file(a, best.id)).engine.name == "onnx"  # and its ONNX file: A's Draw runs onnxruntime
    assert "succeeded" in queue.log_tail(a, train)  # B's log, stored when the job ended

    evaluate = queue.submit(a, "evaluate", {"model": best.id, "dataset": "synth", "split": "train"})
    assert _worker_once(b).returncode == 0
    result = queue.job_status(a, evaluate)
    assert result["status"] == "succeeded", result["error"]
    report = a.resolve(result["result"]["report"])
    assert (report / "report.md").is_file()
    mistakes, total = review_page(a, ReviewQuery(best.id))
    assert total > 0 and all(catalog.image_file(a, m["path"]).is_file() for m in mistakes)  # one by one, by range
    with zipfile.ZipFile(a.store.fs.open(shard)) as z:
        assert catalog.image_file(a, mistakes[0]["path"]).read_bytes() == z.read(mistakes[0]["path"])


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_running_jobs_log_is_followed_from_another_machine_and_never_replaced_under_its_job(settings, s3, tmp_path):
    a = replace(settings, storage_url=URL)  # the dashboard's machine
    b = replace(a, data_dir=tmp_path / "machine-b")  # the worker's machine, which writes the log
    job = queue.submit(a, "synth", {"n": 50, "name": "s1"})
    queue.claim(a, "worker-b", "cpu")  # running now, on B
    log = b.local(f"logs/job-{job}.log")
    log.parent.mkdir(parents=True)
    log.write_text("line 1\nline 2\n")
    b.push([log])  # what B's worker does every few seconds while the log grows
    assert queue.log_tail(a, job) == "line 1\nline 2"  # A follows it from the bucket
    with log.open("a") as f:
        f.write("line 3\n")  # written on B, not pushed yet
    inode = log.stat().st_ino
    assert queue.log_tail(b, job) == "line 1\nline 2\nline 3"  # B reads its own live file...
    assert log.stat().st_ino == inode  # ...never replaced by the shorter stored copy under the job's open file
    assert queue.log_tail(a, job) == "line 1\nline 2"


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_full_cache_disk_is_one_line_and_leaves_no_part_file(settings, s3, tmp_path):
    a = replace(settings, storage_url=URL)
    stored = a.local("runs/job-1/best.pt")
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"weights" * 1000)
    a.push([stored])
    c = replace(a, data_dir=tmp_path / "machine-c")  # its cache disk is full: every write there fails with ENOSPC
    part = c.local("runs/job-1/.best.pt.part")
    part.parent.mkdir(parents=True)
    part.symlink_to("/dev/full")  # where the download is written first: the kernel's always-full device
    with pytest.raises(StorageError, match=r"cannot read runs/job-1/best.pt: no space left on the local cache disk$"):
        c.resolve("runs/job-1/best.pt")
    assert not c.local("runs/job-1/best.pt").exists() and not part.exists()


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_store_that_cannot_be_used_is_one_line_naming_why(settings, s3, tmp_path, monkeypatch):
    import moto.settings

    with pytest.raises(StorageError, match="unknown scheme 'gs'"):
        check_url("gs://bucket/x")
    monkeypatch.setenv("HWR_STORAGE_URL", "gs://bucket/x")
    r = subprocess.run([PY, "-m", "jobs", "status"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=os.environ.copy())
    assert r.returncode == 1 and r.stderr.startswith("error: storage gs://bucket/x: unknown scheme") \
        and r.stderr.count("\n") == 1, r.stderr
    worker = subprocess.run([PY, "-m", "jobs.worker", "--once", "--poll", "0.2"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "HWR_STORAGE_URL": "s3://no-such-bucket/x"})
    said = worker.stdout + worker.stderr  # the worker logs to its standard output
    assert worker.returncode == 1 and "storage s3://no-such-bucket/x: no bucket named 'no-such-bucket'" in said
    assert "Traceback" not in said
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server now checks who asks
    with pytest.raises(StorageError, match="access denied: check the credentials"):
        replace(settings, storage_url=URL + "-denied").store.check()


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_storage_outage_fails_the_job_in_one_line_keeps_what_was_stored_and_another_machine_resumes_it(
        settings, synth_dir, s3, workers, monkeypatch, tmp_path):
    from moto.server import ThreadedMotoServer

    a = replace(settings, storage_url=URL)
    catalog.import_dataset(a, synth_dir, "synth", "synthetic")
    job = queue.submit(a, "train", {"datasets": ["synth"], "config": {"epochs": 4, "batch_size": 32,
                                                                       "augment": False}})
    monkeypatch.setenv("HWR_STORAGE_URL", URL)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries of a refused connection: fail in a second
    machine_a = workers("--device", "cpu")
    wait_for(lambda: _checkpoints(a, job), 120, "a first checkpoint in the bucket")
    first = _checkpoints(a, job)[0]
    s3.stop()  # the store goes away in the middle of the job
    wait_for(lambda: queue.job_status(a, job)["status"] == "failed", 120, "the job to fail")
    stop_process(machine_a)
    error = queue.job_status(a, job)["error"]
    assert f"storage {URL}: cannot write runs/job-{job}/" in error and "\n" not in error, error
    again = ThreadedMotoServer(ip_address="127.0.0.1", port=int(os.environ["HWR_S3_ENDPOINT"].rsplit(":", 1)[1]),
                               verbose=False)
    again.start()  # the same server back: what was stored before the outage is all there
    try:
        assert a.store.fs.exists(a.store.remote_path(first)) and len(a.store.fs.find(f"{BUCKET}/project/shards")) == 1
        c = replace(a, data_dir=tmp_path / "machine-c")  # its log's end was never stored: what was pushed live is
        assert f"job {job}: train on cpu" in queue.log_tail(c, job, 0)
        queue.resume(a, job)
        assert _worker_once(tmp_path / "machine-b").returncode == 0  # resumed by another machine, from the bucket
        status = queue.job_status(a, job)
        assert status["status"] == "succeeded", status["error"]
        resumed = [line for line in queue.log_tail(a, job, 0).splitlines() if "resuming after epoch" in line]
        assert resumed and "after epoch 0 " not in resumed[-1], queue.log_tail(a, job, 0)[-3000:]
    finally:
        again.stop()


def _checkpoints(settings, job_id: int) -> list[str]:
    with session(settings) as s:
        return list(s.scalars(select(Model.path).where(Model.job_id == job_id)))


def test_the_dashboard_says_in_one_line_why_its_store_cannot_be_used(s3, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("HWR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HWR_START_WORKER", "0")
    monkeypatch.setenv("HWR_DEFAULT_DATA", "0")
    for url, said in (("gs://bucket/x", "unknown scheme 'gs'"), ("s3://no-such-bucket/x", "no bucket named")):
        monkeypatch.setenv("HWR_STORAGE_URL", url)
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=30).run()
        assert not at.exception
        assert len(at.error) == 1 and f"storage {url}: {said}" in at.error[0].value
        assert not at.get("dataframe") and not at.button  # no page ran: nothing can be started against it
