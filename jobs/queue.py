"""The database is the queue: submit, claim (atomically), heartbeat, progress, cancel, resume, recover, status."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from db.catalog import dataset_id
from db.engine import session
from db.models import FINISHED, RESUMABLE, WAITING, Job, JobMetric, JobStatus, Model, Worker, utcnow
from db.settings import Settings
from db.storage import StorageError
from jobs import kinds
from jobs.context import remove_secrets, run_dir, secrets_dir
from jobs.kinds.train import TrainParams
from jobs.params import JobError, to_dict

log = logging.getLogger("jobs.queue")
STALE_AFTER_S = 30.0
WORKER_ALIVE_S = 15.0


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite gives datetimes back without their zone; they are stored in UTC."""
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def submit(settings: Settings, kind: str, values: dict, secrets: dict[str, str] | None = None,
           any_path: bool = False) -> int:
    """Validate and queue a job; returns its id. Nothing is written when the parameters are wrong.

    ``secrets`` (file name -> text, e.g. ``{"kaggle.json": ...}``) are written to ``DATA_DIR/secrets/<job id>/``
    (0700/0600) before the job becomes visible to a worker, never to the database; they are removed when the job ends
    in any state. An import reads only under ``settings.allowed_import_roots`` unless ``any_path`` (the operator's
    command line: a person at a shell on the server reads those files anyway)."""
    spec = kinds.kind(kind)
    p = spec.prepare(settings, spec.parse(values), any_path, secrets or {})
    job_id = None
    try:
        with session(settings, write=True) as s:
            job = Job(kind=kind, params=to_dict(p), requested_device=spec.device(p), ranks=spec.ranks(p))
            s.add(job)
            s.flush()
            job_id = job.id
            job.log_path = settings.relative(settings.data_dir / "logs" / f"job-{job.id}.log")
            if secrets:
                _write_secrets(settings, job.id, secrets)
        return job_id
    except BaseException:
        if job_id is not None:
            remove_secrets(settings, job_id)
        raise


RETRAIN = {"epochs": 10, "max_minutes": 5.0, "lr": 5e-4}  # a fine-tune: short, at a quarter of the default LR


def submit_retrain(settings: Settings, model_id: int, add_datasets: list[str] | tuple[str, ...] = ()) -> int:
    """Queue a fine-tune from ``model_id`` on what it was trained on (the datasets as they are now, corrections and new
    labels included) plus ``add_datasets`` (e.g. a pool labelled on Label next), with its training options, for
    ``RETRAIN``'s short budget. Returns the job id."""
    from db.catalog import splits_of

    with session(settings) as s:
        model = s.get(Model, model_id)
        job = s.get(Job, model.job_id) if model is not None and model.job_id else None
    if model is None:
        raise JobError(f"no model with id {model_id}")
    if job is None or job.kind != "train":
        raise JobError(f"model {model_id} was not trained by a job here, so there is no training data to retrain it "
                       "on: start a training job with it as the start model (Train page, or jobs submit train --init)")
    known = {f.name for f in fields(TrainParams)}
    params = {k: v for k, v in job.params.items() if k in known}  # an adopted model's job notes where it came from
    added = [d for d in add_datasets if d not in params["datasets"]]
    splits = params.get("splits")
    if splits is not None and added:
        splits = sorted(set(splits) | {x for d in added for x in splits_of(settings, dataset_id(settings, d))})
    config = {**params.get("config", {}), **RETRAIN}
    # a self-training run retrained: the model being retrained reads the pool (no teacher phase)
    teacher = model_id if config.get("self_train", 0) > 0 and params.get("unlabelled_datasets") else None
    return submit(settings, "train", {**params, "datasets": params["datasets"] + added, "splits": splits,
                                      "init_model": model_id, "resume": False, "config": config,
                                      "teacher_model": teacher})


def _write_secrets(settings: Settings, job_id: int, secrets: dict[str, str]) -> None:
    folder = secrets_dir(settings, job_id)
    folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.rmtree(folder, ignore_errors=True)  # a folder left by a job of a database that was reset
    folder.mkdir(mode=0o700)
    for name, text in secrets.items():
        if Path(name).name != name or name.startswith("."):
            raise JobError(f"secret file name {name!r} must be a plain file name")
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)


def clean_secrets(settings: Settings) -> list[int]:
    """Remove the secrets of every job that is no longer queued or running (a worker does this on start)."""
    root = settings.data_dir / "secrets"
    if not root.is_dir():
        return []
    with session(settings) as s:
        waiting = set(s.scalars(select(Job.id).where(Job.status.in_(WAITING))))
    removed = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.is_symlink() and folder.name.isdigit() and int(folder.name) not in waiting:
            remove_secrets(settings, int(folder.name))
            removed.append(int(folder.name))
    return removed


def servable(device: str, gpus: int | None = None) -> list[str]:
    """The device names a worker on ``device`` runs jobs for: ``auto``, its own, its type (``cuda`` for ``cuda:1``),
    and every ``cuda:N`` of its ``gpus`` when it serves them all (``device`` is ``cuda``)."""
    names = ["auto", device, device.split(":")[0]]
    if device == "cuda":
        names += [f"cuda:{i}" for i in range(gpus or 0)]
    return list(dict.fromkeys(names))


def serves(worker_device: str, requested: str, gpus: int | None = None) -> bool:
    """Whether a worker on ``worker_device`` (with ``gpus`` GPUs; unknown: any) can run a job asking for ``requested``."""
    if requested in servable(worker_device, gpus):
        return True
    return worker_device == "cuda" and gpus is None and requested.startswith("cuda:")


def run_device(requested: str, worker_device: str) -> str:
    """The device a claimed job runs on: the GPU it named, else the worker's."""
    return requested if ":" in requested else worker_device


def claim(settings: Settings, worker_id: str, device: str, gpus: int | None = None,
          free: list[str] | None = None) -> Job | None:
    """Take the oldest queued job this worker can run (``servable``) on its ``free`` devices (None: all of them): a job
    on N devices only with N free. ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the write transaction (BEGIN
    IMMEDIATE) serializes claimers. The status check in the UPDATE makes it exact on both."""
    free = list(free) if free is not None else _all_devices(device, gpus)
    names = [n for n in servable(device, gpus) if ":" not in n or n in free or n == device]
    with session(settings, write=True) as s:
        job = s.scalar(select(Job).where(Job.status == JobStatus.QUEUED, Job.requested_device.in_(names),
                                         Job.ranks <= len(free))
                       .order_by(Job.id).limit(1).with_for_update(skip_locked=True))
        if job is None:
            return None
        devices = [job.requested_device] if ":" in job.requested_device else free[:job.ranks]
        now = utcnow()
        done = s.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.QUEUED)
                         .values(status=JobStatus.RUNNING, worker_id=worker_id, devices=devices,
                                 device=devices[0] if len(devices) == 1 else f"{len(devices)} x {device.split(':')[0]}",
                                 started_at=now, heartbeat_at=now,
                                 finished_at=None, error=None, attempts=Job.attempts + 1)
                         .execution_options(synchronize_session=False))
        if done.rowcount != 1:
            return None
        s.refresh(job)
        return job


def _all_devices(device: str, gpus: int | None) -> list[str]:
    """A worker's devices by name when it did not list its free ones: each GPU of a ``cuda`` worker, else its one."""
    return [f"cuda:{i}" for i in range(gpus)] if device == "cuda" and gpus else [device]


def heartbeat(settings: Settings, job_id: int, pid: int | None = None) -> bool:
    """Record that the job is alive; returns whether a cancel was requested."""
    with session(settings, write=True) as s:
        values = {"heartbeat_at": utcnow()} | ({"pid": pid} if pid is not None else {})
        s.execute(update(Job).where(Job.id == job_id).values(**values))
        return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def finish(settings: Settings, job_id: int, status: str, error: str | None = None, result: dict | None = None,
           only_if_running: bool = True) -> bool:
    """Set a final status (only on a running job unless told otherwise); returns whether it changed."""
    with session(settings, write=True) as s:
        stmt = update(Job).where(Job.id == job_id)
        if only_if_running:
            stmt = stmt.where(Job.status == JobStatus.RUNNING)
        values = {"status": status, "finished_at": utcnow(), "error": error}
        if result is not None:
            values["result"] = result
        if status == JobStatus.SUCCEEDED:
            values["progress"] = 1.0
        return s.execute(stmt.values(**values)).rowcount == 1


def request_cancel(settings: Settings, job_id: int) -> str:
    """A queued job is cancelled at once; a running one is asked to stop (its worker enforces it). Returns the status."""
    with session(settings, write=True) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobError(f"no job with id {job_id}")
        if job.status == JobStatus.QUEUED:
            job.status, job.finished_at = JobStatus.CANCELLED, utcnow()
            remove_secrets(settings, job_id)
        elif job.status == JobStatus.RUNNING:
            job.cancel_requested = True
            log.info("job %s: cancel requested", job_id)
        return job.status


def resume(settings: Settings, job_id: int) -> int:
    """Queue an interrupted, cancelled or failed job again; a training job continues from its ``last.pt``."""
    with session(settings, write=True) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobError(f"no job with id {job_id}")
        if job.status not in RESUMABLE:
            raise JobError(f"job {job_id} is {job.status}; only interrupted, cancelled or failed jobs can be resumed")
        params = dict(job.params)
        if job.kind == "train":
            params["resume"] = run_dir(settings, job_id).joinpath("last.pt").exists()
        job.params = params
        job.status, job.cancel_requested, job.error, job.finished_at = JobStatus.QUEUED, False, None, None
        return job.id


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(settings: Settings, stale_after: float = STALE_AFTER_S) -> list[int]:
    """Running jobs whose worker is gone become interrupted: at once when the worker was on this host and its
    process is dead, else when the job's heartbeat is older than ``stale_after`` seconds."""
    host = socket.gethostname()
    cutoff = utcnow() - timedelta(seconds=stale_after)
    interrupted = []
    with session(settings, write=True) as s:
        workers = {w.id: w for w in s.scalars(select(Worker))}
        for job in s.scalars(select(Job).where(Job.status == JobStatus.RUNNING)):
            w = workers.get(job.worker_id or "")
            dead_here = w is not None and w.host == host and not pid_alive(w.pid)
            stale = job.heartbeat_at is None or as_utc(job.heartbeat_at) < cutoff
            if dead_here or stale:
                seen = as_utc(job.heartbeat_at)
                why = "its worker process is gone" if dead_here else f"no heartbeat for over {stale_after:.0f} s"
                job.status, job.finished_at = JobStatus.INTERRUPTED, utcnow()
                job.error = (f"interrupted: {why} (last heartbeat {seen:%Y-%m-%d %H:%M:%S} UTC); "
                             f"resume it with `python -m jobs resume {job.id}`" if seen else f"interrupted: {why}")
                interrupted.append(job.id)
                log.warning("job %s marked interrupted: %s (worker %s)", job.id, why, job.worker_id)
        for w in workers.values():
            if w.stopped_at is None and (as_utc(w.heartbeat_at) < cutoff or (w.host == host and not pid_alive(w.pid))):
                w.stopped_at = utcnow()
                log.info("worker %s marked stopped (no heartbeat or process gone)", w.id)
    return interrupted


def alive_workers(settings: Settings, within: float = WORKER_ALIVE_S) -> list[Worker]:
    cutoff = utcnow() - timedelta(seconds=within)
    with session(settings) as s:
        return list(s.scalars(select(Worker).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= cutoff)))


def live_devices(settings: Settings) -> dict[str, str]:
    """Device name -> description, over the live workers (what a training job can ask for besides ``auto``)."""
    out: dict[str, str] = {}
    for w in alive_workers(settings):
        for d in w.devices or [{"name": w.device, "label": w.device}]:
            memory = f", {d['memory_gb']:g} GB" if d.get("memory_gb") else ""
            out[d["name"]] = f"{d['name']} ({d.get('label', d['name'])}{memory})" if d["name"] != d.get("label") else d["name"]
    if any(name.startswith("cuda:") for name in out):
        out["cuda"] = "cuda (any free GPU of a worker)"
    return dict(sorted(out.items()))


def latest_metrics(settings: Settings, job_id: int) -> dict:
    """The newest value of each metric name (step and epoch metrics apart: ``train_loss`` vs ``epoch_train_loss``)."""
    with session(settings) as s:
        newest = (select(JobMetric.kind, JobMetric.name, func.max(JobMetric.id).label("id"))
                  .where(JobMetric.job_id == job_id).group_by(JobMetric.kind, JobMetric.name).subquery())
        rows = s.execute(select(JobMetric.kind, JobMetric.name, JobMetric.value, JobMetric.step, JobMetric.epoch)
                         .join(newest, JobMetric.id == newest.c.id)).all()
    out: dict = {}
    for kind, name, value, step, epoch in rows:
        key = f"epoch_{name}" if kind == "epoch" and name == "train_loss" else name
        out[key] = value
        out["step" if kind == "step" else "epoch"] = max(out.get("step" if kind == "step" else "epoch", 0),
                                                          step if kind == "step" else epoch)
    return out


def metric_rows(settings: Settings, job_ids: list[int], after_id: int = 0) -> list[dict]:
    """Every metric row of these jobs (for curves); ``after_id`` fetches only the new ones."""
    with session(settings) as s:
        rows = s.execute(select(JobMetric.id, JobMetric.job_id, JobMetric.kind, JobMetric.step, JobMetric.epoch,
                                JobMetric.name, JobMetric.value)
                         .where(JobMetric.job_id.in_(job_ids), JobMetric.id > after_id).order_by(JobMetric.id)).all()
    return [dict(r._mapping) for r in rows]


def waiting_reason(requested: str, workers: list[Worker], ranks: int = 1) -> str | None:
    """Why a queued job asking for ``requested`` (on ``ranks`` devices at once) is not being taken, when no live worker
    can run it now; else None. A job on one device waits its turn silently behind a busy worker's jobs."""
    if not workers:
        return "waiting: no worker is alive (start one: python -m jobs.worker)"
    capable = [w for w in workers if serves(w.device, requested, _gpus(w))]
    if not capable:
        have = sorted({d["name"] for w in workers for d in (w.devices or [{"name": w.device}])})
        return f"waiting: no live worker has {requested} (live workers run on {', '.join(have)})"
    if ranks == 1:
        return None
    kinds = {w.device.split(":")[0] for w in capable}
    unit = "GPU" if kinds == {"cuda"} else "CPU slot" if kinds == {"cpu"} else "device"
    most = max(len(w.devices or [w.device]) for w in capable)
    if most < ranks:
        return f"waiting: no live worker has {ranks} {unit}s (the most one has is {most})"
    if max(len(w.free if w.free is not None else w.devices or [w.device]) for w in capable) < ranks:
        return f"waiting: no live worker has {ranks} free {unit}s"
    return None


def _gpus(w: Worker) -> int | None:
    return len([d for d in w.devices if d["name"].startswith("cuda:")]) if w.devices is not None else None


def job_status(settings: Settings, job_id: int) -> dict:
    with session(settings) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobError(f"no job with id {job_id}")
        models = s.execute(select(Model.id, Model.kind, Model.path, Model.epoch).where(Model.job_id == job_id)
                           .order_by(Model.id)).all()
    waiting = waiting_reason(job.requested_device, alive_workers(settings), job.ranks) \
        if job.status == JobStatus.QUEUED else None
    return {**job_summary(job, waiting), "metrics": latest_metrics(settings, job_id),
            "checkpoints": [{"model_id": m.id, "kind": m.kind, "path": m.path, "epoch": m.epoch} for m in models]}


def job_summary(job: Job, waiting: str | None = None) -> dict:
    def iso(dt):
        return as_utc(dt).isoformat() if dt is not None else None

    return {"id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress, "message": job.message,
            "progress_data": job.progress_data, "params": job.params, "device": job.device or job.requested_device,
            "devices": job.devices, "ranks": job.ranks, "worker": job.worker_id,
            "created_at": iso(job.created_at), "started_at": iso(job.started_at), "finished_at": iso(job.finished_at),
            "heartbeat_at": iso(job.heartbeat_at), "cancel_requested": job.cancel_requested, "error": job.error,
            "result": job.result, "log": job.log_path, "data_count": job.data_count, "data_hash": job.data_hash,
            "finished": job.status in FINISHED, "waiting": waiting}


def list_jobs(settings: Settings, limit: int = 50, statuses: tuple[str, ...] | None = None) -> list[dict]:
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if statuses:
        stmt = stmt.where(Job.status.in_(statuses))
    with session(settings) as s:
        jobs = list(s.scalars(stmt))
    workers = alive_workers(settings) if any(j.status == JobStatus.QUEUED for j in jobs) else []
    return [job_summary(j, waiting_reason(j.requested_device, workers, j.ranks) if j.status == JobStatus.QUEUED else None)
            for j in jobs]


def jobs_of_model(settings: Settings, model_id: int, kinds: tuple[str, ...] = ("evaluate", "predict"),
                  limit: int = 200) -> list[dict]:
    """The latest jobs of these kinds that read with ``model_id``, newest first."""
    with session(settings) as s:
        jobs = s.scalars(select(Job).where(Job.kind.in_(kinds)).order_by(Job.id.desc()).limit(limit)).all()
    return [job_summary(j) for j in jobs if j.params.get("model") == model_id]


def log_tail(settings: Settings, job_id: int, lines: int = 50) -> str:
    with session(settings) as s:
        job = s.get(Job, job_id)
    if job is None:
        raise JobError(f"no job with id {job_id}")
    path = _log_file(settings, job) if job.log_path else None
    if path is None or not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 256 * 1024))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:]) if lines else text


def _log_file(settings: Settings, job: Job) -> Path:
    """A job's log here. With a storage URL: a finished job's is the stored one (its worker pushed it at the end); a
    running job's, the longer of this machine's copy and the stored one (a running log only grows: its worker writes
    the local copy and pushes it every few seconds), so the worker's machine reads its live file, never replaced under
    the job, and any other machine what was last stored."""
    local = settings.local(job.log_path)
    if not settings.storage_url:
        return local
    try:
        if job.status not in FINISHED:
            stored = settings.store.size(job.log_path)
            if stored is None or stored <= (local.stat().st_size if local.exists() else -1):
                return local
        return settings.resolve(job.log_path, fresh=True)
    except StorageError:
        return local
