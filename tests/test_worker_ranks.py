"""A job on several devices, through the queue: a worker claims a job on N devices only with N free, starts it under
torchrun as N DDP ranks (each GPU job sees only its own GPUs), runs one job per free device at once, and a cancel ends
every rank. The claims are checked with workers that report made-up GPUs; the processes for real on the CPU, where a
worker started with ``--slots 2`` runs two gloo ranks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.engine import session
from db.models import Job, JobMetric, Model, Worker
from jobs import queue
from jobs.params import ParamsError
from jobs.worker import child_command
from tests.conftest import PY, ROOT, wait_for

H100 = {"label": "NVIDIA H100 80GB HBM3", "memory_gb": 79.1}
TRAIN = {"batch_size": 16, "log_every": 2, "augment": False}


@pytest.fixture
def synth(settings, synth_dir):
    from db import catalog

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    return settings


def _train(settings, ranks: int, device: str = "auto", **config) -> int:
    return queue.submit(settings, "train", {"datasets": ["synth"], "ranks": ranks,
                                            "config": {**TRAIN, "device": device, **config}})


def _worker(settings, worker_id: str, device: str, devices: list[dict], free: list[str]) -> None:
    with session(settings, write=True) as s:
        s.add(Worker(id=worker_id, host="gpu-box", pid=1, device=device, devices=devices, free=free))


def _job(settings, job_id: int) -> Job:
    with session(settings) as s:
        return s.get(Job, job_id)


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_job_on_two_gpus_is_claimed_only_with_two_free(synth):
    two = _train(synth, 2)
    assert queue.claim(synth, "w", "cuda", 2, free=["cuda:1"]) is None  # one free: it waits
    one = _train(synth, 1)
    job = queue.claim(synth, "w", "cuda", 2, free=["cuda:1"])  # the one-GPU job behind it fits
    assert job.id == one and job.devices == ["cuda:1"] and job.device == "cuda:1"
    job = queue.claim(synth, "w", "cuda", 2, free=["cuda:0", "cuda:1"])
    assert job.id == two and job.devices == ["cuda:0", "cuda:1"] and job.device == "2 x cuda" and job.ranks == 2


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_job_on_more_gpus_than_a_worker_has_or_has_free_says_so(synth):
    job_id = _train(synth, 2, "cuda")
    _worker(synth, "one-gpu", "cuda:0", [{"name": "cuda:0", **H100}], ["cuda:0"])
    assert queue.job_status(synth, job_id)["waiting"] == "waiting: no live worker has 2 GPUs (the most one has is 1)"
    _worker(synth, "two-gpus", "cuda", [{"name": "cuda:0", **H100}, {"name": "cuda:1", **H100}], ["cuda:1"])
    assert queue.job_status(synth, job_id)["waiting"] == "waiting: no live worker has 2 free GPUs"
    with session(synth, write=True) as s:
        s.get(Worker, "two-gpus").free = ["cuda:0", "cuda:1"]
    assert queue.job_status(synth, job_id)["waiting"] is None
    r = subprocess.run([PY, "-m", "jobs", "submit", "train", "--dataset", "synth", "--gpus", "4", "--device", "cuda"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert r.returncode == 0 and "(waiting: no live worker has 4 GPUs (the most one has is 2))" in r.stdout, r.stderr


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
@pytest.mark.parametrize("values, message", [
    ({"ranks": 0}, "between 1 and 64"),
    ({"ranks": 2, "config": {"device": "cuda:1"}}, "takes the free GPUs of one worker"),
    ({"ranks": 2, "config": {"self_train": 0.3}, "unlabelled_datasets": ["synth"]}, "self-training runs on one device"),
])
def test_a_job_on_several_devices_that_cannot_run_is_refused(synth, values, message):
    with pytest.raises(ParamsError, match=message):
        queue.submit(synth, "train", {"datasets": ["synth"], **values})
    assert queue.list_jobs(synth) == []


def test_a_gpu_job_sees_only_its_gpus_and_several_run_under_torchrun():
    job = Job(id=7)
    command, env = child_command(job, 42, ["cuda:2", "cuda:3"])
    assert env == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert command[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    assert command[7:] == ["jobs.runner", "7", "--parent", "42", "--device", "cuda"]
    command, env = child_command(job, 42, ["cuda:1"])
    assert env == {"CUDA_VISIBLE_DEVICES": "1"} and command[1:] == ["-m", "jobs.runner", "7", "--parent", "42",
                                                                     "--device", "cuda"]
    assert child_command(job, 42, ["cpu"]) == ([PY, "-m", "jobs.runner", "7", "--parent", "42", "--device", "cpu"], {})


def _processes_of(job_id: int, launcher: bool = True) -> list[int]:
    """The pids of the processes running job ``job_id``: its runner ranks, and torchrun unless ``launcher`` is False."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"jobs.runner" in argv and argv[argv.index(b"jobs.runner") + 1] == str(job_id).encode() and \
                (launcher or b"torch.distributed.run" not in argv):
            pids.append(int(proc.name))
    return pids


def _ranks_of(job_id: int) -> list[int]:
    return _processes_of(job_id, launcher=False)


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_worker_with_two_slots_trains_one_job_as_two_ranks_and_its_cancel_or_death_ends_both(synth, workers):
    worker = workers("--device", "cpu", "--slots", "2")
    job_id = _train(synth, 2, "cpu", epochs=2)
    wait_for(lambda: _job(synth, job_id).status in ("succeeded", "failed"), 180, "the job on two ranks")
    job = _job(synth, job_id)
    assert job.status == "succeeded", job.error
    assert job.devices == ["cpu", "cpu"] and job.result["ranks"] == 2
    with session(synth) as s:  # rank 0 alone wrote: one row per epoch, one best and one last model
        assert s.scalar(select(func.count()).select_from(JobMetric).where(
            JobMetric.job_id == job_id, JobMetric.kind == "epoch", JobMetric.name == "val_cer")) == 2
        assert sorted(s.scalars(select(Model.kind).where(Model.job_id == job_id))) == ["best", "last"]
    log = synth.resolve(job.log_path).read_text()
    assert "rank 0" in log and "rank 1" in log

    long = _train(synth, 2, "cpu", epochs=500)
    wait_for(lambda: len(_ranks_of(long)) == 2 and _job(synth, long).progress > 0, 120, "two ranks training")
    assert subprocess.run([PY, "-m", "jobs", "cancel", str(long)], cwd=ROOT, capture_output=True, timeout=60,
                          env=os.environ.copy()).returncode == 0
    wait_for(lambda: _job(synth, long).status == "cancelled", 60, "the cancel")
    wait_for(lambda: not _processes_of(long), 30, "both ranks and torchrun to end")

    a, b = _train(synth, 1, "cpu", epochs=1), _train(synth, 1, "cpu", epochs=1)
    wait_for(lambda: _job(synth, a).status == "running" and _job(synth, b).status == "running", 60,
             "two jobs running at once on the worker's two slots")
    wait_for(lambda: {_job(synth, a).status, _job(synth, b).status} == {"succeeded"}, 120, "both jobs")

    orphaned = _train(synth, 2, "cpu", epochs=500)
    wait_for(lambda: len(_ranks_of(orphaned)) == 2, 120, "two ranks of the next job")
    worker.kill()  # kill -9: the ranks' parent is torchrun, and they watch the worker's pid themselves
    worker.wait(timeout=10)
    wait_for(lambda: not _processes_of(orphaned), 30, "both ranks and torchrun to end with their worker")
    wait_for(lambda: _job(synth, orphaned).status == "interrupted", 30, "the job marked interrupted")
