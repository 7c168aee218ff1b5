"""Jobs go to the workers that have their device: matching tested with workers that report made-up device lists (an
H100 machine is not needed to check who claims what), refused names, and a waiting job that says why."""

from __future__ import annotations

import pytest

from db.engine import session
from db.models import Worker
from jobs import queue
from jobs.params import JobError

H100 = {"label": "NVIDIA H100 80GB HBM3", "memory_gb": 79.1}


def _worker(settings, worker_id: str, device: str, devices: list[dict]) -> None:
    with session(settings, write=True) as s:
        s.add(Worker(id=worker_id, host="gpu-box", pid=1, device=device, devices=devices))


def _train(settings, device: str) -> int:
    return queue.submit(settings, "train", {"datasets": ["synth"], "config": {"device": device}})


@pytest.fixture
def synth(settings, synth_dir):
    from db import catalog

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    return settings


@pytest.mark.parametrize("worker, gpus, requested, runs_on", [
    ("cuda", 2, "cuda:1", "cuda:1"),   # a worker of the whole machine serves each of its GPUs
    ("cuda", 2, "cuda", "cuda:0"),     # its first free GPU
    ("cuda", 2, "auto", "cuda:0"),
    ("cuda", 2, "cuda:2", None),      # it has two
    ("cuda:1", None, "cuda:1", "cuda:1"),
    ("cuda:1", None, "cuda", "cuda:1"),
    ("cuda:0", None, "cuda:1", None),  # one worker per GPU: only its own
    ("cpu", None, "cuda", None),
    ("cpu", None, "auto", "cpu"),
    ("cpu", None, "cpu", "cpu"),
])
def test_who_claims_what(synth, worker, gpus, requested, runs_on):
    job_id = _train(synth, requested)
    job = queue.claim(synth, "w", worker, gpus)
    if runs_on is None:
        assert job is None and queue.job_status(synth, job_id)["status"] == "queued"
    else:
        assert job.id == job_id and job.device == runs_on


def test_unknown_device_is_refused_at_submit(synth):
    for name in ("tpu:7", "cuda:x", "gpu", ""):
        with pytest.raises(JobError, match="unknown device"):
            _train(synth, name)
    assert queue.list_jobs(synth) == []


def test_a_job_no_live_worker_can_run_says_so(synth):
    job_id = _train(synth, "cuda:1")
    assert queue.job_status(synth, job_id)["waiting"] == "waiting: no worker is alive (start one: python -m jobs.worker)"
    _worker(synth, "cpu-box", "cpu", [{"name": "cpu", "label": "cpu"}])
    assert queue.job_status(synth, job_id)["waiting"] == "waiting: no live worker has cuda:1 (live workers run on cpu)"
    _worker(synth, "one-gpu", "cuda:0", [{"name": "cuda:0", **H100}])
    assert "no live worker has cuda:1 (live workers run on cpu, cuda:0)" in queue.list_jobs(synth)[0]["waiting"]
    _worker(synth, "two-gpus", "cuda", [{"name": "cuda:0", **H100}, {"name": "cuda:1", **H100}])
    assert queue.job_status(synth, job_id)["waiting"] is None
    assert queue.live_devices(synth) == {
        "cpu": "cpu", "cuda": "cuda (any free GPU of a worker)",
        "cuda:0": "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GB)", "cuda:1": "cuda:1 (NVIDIA H100 80GB HBM3, 79.1 GB)"}


def test_the_train_page_offers_the_workers_devices(app_env_with_workers):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60).run()
    at.switch_page(str(ROOT / "dashboard" / "app_pages" / "train.py")).run()
    assert not at.exception
    device = at.selectbox(key="train_device")
    assert device.options == ["auto (the worker's device: a GPU when it has one)", "cpu", "cuda (any free GPU of a worker)",
                              "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GB)"]
    device.set_value("cuda")
    at.number_input(key="train_ranks").set_value(2)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    assert "Job 1 is waiting: no live worker has 2 GPUs (the most one has is 1)." in [w.value for w in at.warning]
    assert queue.job_status(app_env_with_workers, 1)["ranks"] == 2


@pytest.fixture
def app_env_with_workers(tmp_path, monkeypatch, synth_dir):
    from db import catalog
    from db.engine import dispose_engines
    from db.settings import Settings

    monkeypatch.setenv("HWR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HWR_DATABASE_URL", raising=False)
    monkeypatch.setenv("HWR_START_WORKER", "0")
    monkeypatch.setenv("HWR_DEFAULT_DATA", "0")
    settings = Settings.from_env()
    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    _worker(settings, "gpu", "cuda:0", [{"name": "cuda:0", **H100}])
    _worker(settings, "cpu", "cpu", [{"name": "cpu", "label": "cpu"}])
    yield settings
    dispose_engines()
