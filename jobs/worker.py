"""``python -m jobs.worker [--device DEV] [--once]``: claims queued jobs and runs each in a child process.

The worker records its own heartbeat and the running job's every couple of seconds, enforces cancel requests
(the child is asked to stop within a batch; it is killed if it has not stopped after a grace period), and on start
marks jobs whose worker died as interrupted. Several workers can share one database (one per GPU, or several
machines on PostgreSQL); a job is claimed by exactly one of them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from db.engine import get_engine, session
from db.models import WAITING, Job, JobStatus, Worker, utcnow
from db.settings import Settings
from jobs import logs, queue
from jobs.context import remove_secrets

log = logging.getLogger("jobs.worker")
HEARTBEAT_S = 2.0
DATABASE_GONE_EXIT = 3
DASHBOARDS_GONE_AFTER_S = 60.0
CANCEL_GRACE_S = 10.0
ROOT = Path(__file__).resolve().parent.parent


def list_devices(device: str) -> list[dict]:
    """What this worker runs jobs on, for the queue and the Train page: the CPU, or each GPU it serves with its name and
    memory (``cuda``: every GPU of the machine; ``cuda:N``: that one)."""
    if not device.startswith("cuda"):
        return [{"name": device, "label": device}]
    import torch

    indices = range(torch.cuda.device_count()) if device == "cuda" else [int(device.split(":")[1])]
    out = []
    for i in indices:
        props = torch.cuda.get_device_properties(i)
        out.append({"name": f"cuda:{i}", "label": props.name, "memory_gb": round(props.total_memory / 2**30, 1)})
    return out


def resolve_device(name: str) -> str:
    """``auto``: the device ``ocr.checkpoint.select_device`` picks (a GPU when the machine has one), by name."""
    if name != "auto":
        return name
    from ocr.checkpoint import select_device

    return str(select_device("auto"))


class JobWorker:
    def __init__(self, settings: Settings, device: str = "auto", poll: float = 1.0, stale_after: float = queue.STALE_AFTER_S,
                 cancel_grace: float = CANCEL_GRACE_S, with_dashboards: bool = False,
                 dashboards_gone_after: float = DASHBOARDS_GONE_AFTER_S):
        self.settings = settings
        self.with_dashboards = with_dashboards
        self.dashboards_gone_after = dashboards_gone_after
        self.dashboards_seen = time.monotonic()
        self.identity = self._storage_identity()
        self.device = resolve_device(device)
        self.devices = list_devices(self.device)
        self.gpus = len(self.devices) if self.device == "cuda" else None
        self.poll = poll
        self.stale_after = stale_after
        self.cancel_grace = cancel_grace
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = False
        self.child: subprocess.Popen | None = None

    def log(self, text: str, level: int = logging.INFO) -> None:
        log.log(level, "[%s] %s", self.id, text)

    def _sqlite_file(self) -> Path | None:
        url = make_url(self.settings.database_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database)

    def _storage_identity(self) -> dict[str, tuple[int, int] | None]:
        """(device, inode) of the data directory and of the SQLite file: a folder deleted or replaced under a running
        worker keeps its old inode open, and jobs would succeed into a database nobody sees."""
        paths = {"data directory": self.settings.data_dir}
        if (db_file := self._sqlite_file()) is not None:
            paths["database file"] = db_file
        ident = {}
        for what, path in paths.items():
            try:
                st = path.stat()
                ident[f"{what} {path}"] = (st.st_dev, st.st_ino)
            except OSError:
                ident[f"{what} {path}"] = None
        return ident

    def storage_problem(self) -> str | None:
        """Why this worker must stop (its data directory or database file is gone or replaced), else None."""
        now = self._storage_identity()
        for what, before in self.identity.items():
            if before is None:
                continue
            if now.get(what) is None:
                return f"the {what} is gone"
            if now[what] != before:
                return f"the {what} was replaced by another"
        return None

    def dashboards_gone(self) -> bool:
        """For a worker started by a dashboard: no dashboard of this data directory has been alive for a while and no
        job is queued or running."""
        if not self.with_dashboards:
            return False
        from jobs.control import live_dashboards

        if live_dashboards(self.settings):
            self.dashboards_seen = time.monotonic()
            return False
        with session(self.settings) as s:
            waiting = s.scalar(select(func.count()).select_from(Job).where(Job.status.in_(WAITING)))
        if waiting:
            self.dashboards_seen = time.monotonic()
            return False
        return time.monotonic() - self.dashboards_seen > self.dashboards_gone_after

    def register(self) -> None:
        get_engine(self.settings)
        with session(self.settings, write=True) as s:
            s.add(Worker(id=self.id, host=socket.gethostname(), pid=os.getpid(), device=self.device,
                         devices=self.devices))
        queue.recover(self.settings, self.stale_after)
        for job_id in queue.clean_secrets(self.settings):
            self.log(f"job {job_id}: removed the secrets of a job that is no longer waiting")

    def beat(self, job_id: int | None) -> None:
        with session(self.settings, write=True) as s:
            s.execute(update(Worker).where(Worker.id == self.id).values(heartbeat_at=utcnow(), job_id=job_id))

    def run(self, once: bool = False) -> int:
        self.register()
        self.log(f"started on {self.device}, database {self.settings.redacted_url}")
        last_recover = time.monotonic()
        ran = 0
        try:
            while not self.stopping:
                if problem := self.storage_problem():
                    self.log(f"{problem}: this worker stops claiming jobs and exits", logging.ERROR)
                    return DATABASE_GONE_EXIT
                if self.dashboards_gone():
                    self.log(f"no dashboard has been alive for {self.dashboards_gone_after:.0f} s and no job is waiting: "
                             "this worker, started by a dashboard, exits")
                    break
                self.beat(None)
                if time.monotonic() - last_recover > 60:
                    queue.recover(self.settings, self.stale_after)
                    last_recover = time.monotonic()
                job = queue.claim(self.settings, self.id, self.device, self.gpus)
                if job is None:
                    if once:
                        break
                    time.sleep(self.poll)
                    continue
                self.run_job(job)
                ran += 1
        finally:
            if self.storage_problem() is None:
                with session(self.settings, write=True) as s:
                    s.execute(update(Worker).where(Worker.id == self.id).values(stopped_at=utcnow(), job_id=None))
            self.log(f"stopped after {ran} job(s)")
        return 0

    def run_job(self, job: Job) -> None:
        log_path = self.settings.resolve(job.log_path or f"logs/job-{job.id}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log(f"job {job.id} ({job.kind}) started on {job.device}, log {log_path}")
        with log_path.open("ab") as log:
            self.child = subprocess.Popen(
                [sys.executable, "-m", "jobs.runner", str(job.id), "--parent", str(os.getpid()), "--device",
                 job.device or self.device],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
                env={**os.environ, "HWR_DATA_DIR": str(self.settings.data_dir),
                     "HWR_DATABASE_URL": self.settings.database_url, "PYTHONUNBUFFERED": "1"})
        child = self.child
        cancel_at: float | None = None
        try:
            while child.poll() is None:
                if problem := self.storage_problem():
                    self.log(f"job {job.id}: {problem}; stopping the job", logging.ERROR)
                    self._stop_child(child)
                    return
                self.beat(job.id)
                cancel = queue.heartbeat(self.settings, job.id, pid=child.pid)
                if cancel and cancel_at is None:
                    cancel_at = time.monotonic()
                    self.log(f"job {job.id}: cancel requested")
                if cancel_at is not None and time.monotonic() - cancel_at > self.cancel_grace:
                    self.log(f"job {job.id}: did not stop within {self.cancel_grace:.0f} s of the cancel request, "
                             "killing it", logging.WARNING)
                    self._stop_child(child)
                    queue.finish(self.settings, job.id, JobStatus.CANCELLED,
                                 error=f"cancelled (killed after {self.cancel_grace:.0f} s grace)")
                    break
                if self.stopping:
                    self._stop_child(child)
                    queue.finish(self.settings, job.id, JobStatus.INTERRUPTED,
                                 error=f"interrupted: the worker was stopped; resume it with `python -m jobs resume {job.id}`")
                    break
                try:
                    child.wait(timeout=HEARTBEAT_S)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if child.poll() is None:
                self._stop_child(child)
            self.child = None
            remove_secrets(self.settings, job.id)
        code = child.returncode
        if queue.finish(self.settings, job.id, JobStatus.FAILED,
                        error=f"the job process exited with code {code} before reporting a result; see its log"):
            self.log(f"job {job.id}: process ended with code {code} without a status, marked failed", logging.WARNING)
        self.log(f"job {job.id} finished (exit code {code})")

    @staticmethod
    def _stop_child(child: subprocess.Popen, grace: float = 5.0) -> None:
        if child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def request_stop(self, signum, frame) -> None:
        self.stopping = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps: the device this worker's jobs use")
    parser.add_argument("--once", action="store_true", help="run until the queue is empty, then exit")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between looks at an empty queue")
    parser.add_argument("--stale-after", type=float, default=queue.STALE_AFTER_S,
                        help="a running job without heartbeat for this long is marked interrupted")
    parser.add_argument("--cancel-grace", type=float, default=CANCEL_GRACE_S,
                        help="seconds a cancelled job gets to stop before it is killed")
    parser.add_argument("--with-dashboards", action="store_true",
                        help="exit once no dashboard of this data directory has been alive for a while and no job is "
                             "waiting (how the dashboard starts its worker)")
    parser.add_argument("--dashboards-gone-after", type=float, default=DASHBOARDS_GONE_AFTER_S, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logs.setup()
    try:
        worker = JobWorker(Settings.from_env(), args.device, args.poll, args.stale_after, args.cancel_grace,
                           args.with_dashboards, args.dashboards_gone_after)
        signal.signal(signal.SIGTERM, worker.request_stop)
        signal.signal(signal.SIGINT, worker.request_stop)
        return worker.run(once=args.once)
    except Exception as exc:  # noqa: BLE001 - one readable line, e.g. the database cannot be reached
        log.error("%s: %s", type(exc).__name__, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
