"""``python -m jobs.worker [--device DEV] [--slots N] [--once]``: claims queued jobs and runs each in a child process.

The worker records its own heartbeat (with its free devices) and its running jobs' every couple of seconds, enforces
cancel requests (the job is asked to stop within a batch; its process group is killed if it has not stopped after a
grace period), and on start marks jobs whose worker died as interrupted. It runs one job per free device at once (each
GPU of a ``cuda`` worker, or ``--slots`` of one device), and a job on N devices under ``torchrun`` as N DDP ranks once N
are free. Several workers can share one database (one per GPU, or several machines on PostgreSQL); a job is claimed
by exactly one of them.
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
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from db.engine import get_engine, session
from db.models import WAITING, Job, JobStatus, Worker, utcnow
from db.settings import Settings
from db.storage import StorageError
from jobs import logs, queue
from jobs.context import remove_secrets

log = logging.getLogger("jobs.worker")
HEARTBEAT_S = 2.0
DATABASE_GONE_EXIT = 3
DASHBOARDS_GONE_AFTER_S = 60.0
CANCEL_GRACE_S = 10.0
LOG_PUSH_S = 5.0  # a running job's log goes to the store this often (when it grew): a dashboard elsewhere follows it
LOG_RETRY_S = 60.0  # after a failed push: the store may be down, and the loop must keep its heartbeats
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


def worker_devices(device: str, slots: int = 1) -> list[dict]:
    """One entry per job (or DDP rank) this worker runs at once: each GPU of a worker of ``cuda``, else ``slots`` times
    its one device (a CPU worker started with ``--slots 2`` runs two jobs, or one job as two gloo ranks)."""
    return list_devices(device) * (1 if device == "cuda" else slots)


def child_command(job: Job, worker_pid: int, devices: list[str]) -> tuple[list[str], dict[str, str]]:
    """How a claimed job is started: ``python -m jobs.runner`` in one process, or under ``torchrun`` as one rank per
    device. On GPUs the process sees only its own (``CUDA_VISIBLE_DEVICES``) and names them from 0."""
    env: dict[str, str] = {}
    device = devices[0].split(":")[0]
    if device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(d.split(":")[1] for d in devices)
    runner = ["-m", "jobs.runner", str(job.id), "--parent", str(worker_pid), "--device",
              "cuda" if device == "cuda" else devices[0]]
    if len(devices) == 1:
        return [sys.executable, *runner], env
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(len(devices)),
            *runner], env


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)  # the child leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Running:
    """A job this worker started: its process (a runner, or torchrun and its ranks, in a process group of their own)."""

    job: Job
    child: subprocess.Popen
    devices: list[str]
    cancel_at: float | None = None
    log_push_at: float = 0.0  # when its log may next be pushed to the store (monotonic)
    log_pushed_size: int = 0  # its size when last pushed


class JobWorker:
    def __init__(self, settings: Settings, device: str = "auto", poll: float = 1.0, stale_after: float = queue.STALE_AFTER_S,
                 cancel_grace: float = CANCEL_GRACE_S, with_dashboards: bool = False,
                 dashboards_gone_after: float = DASHBOARDS_GONE_AFTER_S, slots: int = 1):
        self.settings = settings
        self.with_dashboards = with_dashboards
        self.dashboards_gone_after = dashboards_gone_after
        self.dashboards_seen = time.monotonic()
        self.identity = self._storage_identity()
        self.device = resolve_device(device)
        self.devices = worker_devices(self.device, slots)
        self.slots = [d["name"] for d in self.devices]
        self.gpus = len(self.devices) if self.device == "cuda" else None
        self.poll = poll
        self.stale_after = stale_after
        self.cancel_grace = cancel_grace
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = False
        self.running: dict[int, Running] = {}

    def free(self) -> list[str]:
        """The slots no running job holds."""
        free = list(self.slots)
        for r in self.running.values():
            for d in r.devices:
                free.remove(d)
        return free

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
                         devices=self.devices, free=self.free()))
        queue.recover(self.settings, self.stale_after)
        for job_id in queue.clean_secrets(self.settings):
            self.log(f"job {job_id}: removed the secrets of a job that is no longer waiting")

    def beat(self) -> None:
        """The worker's heartbeat, with its free devices (what a job on N devices waits for) and a job it runs."""
        with session(self.settings, write=True) as s:
            s.execute(update(Worker).where(Worker.id == self.id).values(
                heartbeat_at=utcnow(), free=self.free(), job_id=next(iter(self.running), None)))

    def run(self, once: bool = False) -> int:
        self.settings.store.check()  # a missing bucket or wrong credentials: one line, before any job is claimed
        self.register()
        self.log(f"started on {self.device} ({len(self.slots)} slot(s)), database {self.settings.redacted_url}, "
                 f"storage {self.settings.storage_url or self.settings.data_dir}")
        last_recover = time.monotonic()
        ran = 0
        try:
            while not self.stopping:
                if problem := self.storage_problem():
                    self.log(f"{problem}: this worker stops claiming jobs and exits", logging.ERROR)
                    self._stop_all(None, None)
                    return DATABASE_GONE_EXIT
                if not self.running and self.dashboards_gone():
                    self.log(f"no dashboard has been alive for {self.dashboards_gone_after:.0f} s and no job is waiting: "
                             "this worker, started by a dashboard, exits")
                    break
                self.beat()
                if time.monotonic() - last_recover > 60:
                    queue.recover(self.settings, self.stale_after)
                    last_recover = time.monotonic()
                self._tend()
                started = self._claim()
                ran += started
                if not started and not self.running and once:
                    break
                if not started:
                    time.sleep(min(self.poll, HEARTBEAT_S) if self.running else self.poll)
            self._stop_all(JobStatus.INTERRUPTED, "interrupted: the worker was stopped; resume it with "
                                                  "`python -m jobs resume {job}`")
        finally:
            if self.storage_problem() is None:
                with session(self.settings, write=True) as s:
                    s.execute(update(Worker).where(Worker.id == self.id).values(stopped_at=utcnow(), job_id=None))
            self.log(f"stopped after {ran} job(s)")
        return 0

    def _claim(self) -> int:
        """Start every job that fits the free devices (one at a time per slot; a job on N devices needs N free)."""
        started = 0
        while not self.stopping and (free := self.free()):
            job = queue.claim(self.settings, self.id, self.device, self.gpus, free)
            if job is None:
                break
            self._start(job)
            started += 1
        return started

    def _start(self, job: Job) -> None:
        log_path = self.settings.local(job.log_path or f"logs/job-{job.id}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._fetch_log(job)
        devices = list(job.devices or [job.device])
        command, env = child_command(job, os.getpid(), devices)
        self.log(f"job {job.id} ({job.kind}) started on {', '.join(devices)}, log {log_path}")
        with log_path.open("ab") as log:
            child = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                start_new_session=True,  # its own process group: a stop reaches torchrun's ranks too
                env={**os.environ, **env, "HWR_DATA_DIR": str(self.settings.data_dir),
                     "HWR_DATABASE_URL": self.settings.database_url, "PYTHONUNBUFFERED": "1"})
        self.running[job.id] = Running(job, child, devices)

    def _tend(self) -> None:
        """Each running job: its heartbeat, its cancel request (killed after the grace period), its end."""
        for job_id, r in list(self.running.items()):
            if r.child.poll() is not None:
                self._ended(r)
                continue
            cancel = queue.heartbeat(self.settings, job_id, pid=r.child.pid)
            self._push_log(r)
            if cancel and r.cancel_at is None:
                r.cancel_at = time.monotonic()
                self.log(f"job {job_id}: cancel requested")
            if r.cancel_at is not None and time.monotonic() - r.cancel_at > self.cancel_grace:
                self.log(f"job {job_id}: did not stop within {self.cancel_grace:.0f} s of the cancel request, "
                         "killing it", logging.WARNING)
                self._stop_child(r.child)
                queue.finish(self.settings, job_id, JobStatus.CANCELLED,
                             error=f"cancelled (killed after {self.cancel_grace:.0f} s grace)")
                self._ended(r)

    def _ended(self, r: Running, record: bool = True) -> None:
        self.running.pop(r.job.id, None)
        if not record:  # the database or data directory is gone: nothing can be written
            return
        remove_secrets(self.settings, r.job.id)
        self._store_log(r.job)
        code = r.child.returncode
        if queue.finish(self.settings, r.job.id, JobStatus.FAILED,
                        error=f"the job process exited with code {code} before reporting a result; see its log"):
            self.log(f"job {r.job.id}: process ended with code {code} without a status, marked failed", logging.WARNING)
        self.log(f"job {r.job.id} finished (exit code {code})")

    def _fetch_log(self, job: Job) -> None:
        """A job resumed here after running elsewhere: its log so far comes first (this run appends to it)."""
        if self.settings.storage_url and job.log_path and job.attempts > 1:
            try:
                self.settings.pull([job.log_path], fresh=True)
            except StorageError:
                pass  # never stored (its first worker died before the end): this log starts here

    def _push_log(self, r: Running) -> None:
        """A running job's log to the store every ``LOG_PUSH_S`` when it grew, so a dashboard or ``jobs logs`` on
        another machine follows it live; a failed push waits ``LOG_RETRY_S`` (the job itself reports the outage)."""
        if not self.settings.storage_url or not r.job.log_path or time.monotonic() < r.log_push_at:
            return
        path = self.settings.local(r.job.log_path)
        size = path.stat().st_size if path.exists() else 0
        if size == r.log_pushed_size:
            return
        try:
            self.settings.push([path])
            r.log_push_at, r.log_pushed_size = time.monotonic() + LOG_PUSH_S, size
        except StorageError as exc:
            r.log_push_at = time.monotonic() + LOG_RETRY_S
            self.log(f"job {r.job.id}: its log could not be stored, tried again in {LOG_RETRY_S:.0f} s: {exc}",
                     logging.WARNING)

    def _store_log(self, job: Job) -> None:
        """The job's log goes to the store with its end (a dashboard on another machine reads it there)."""
        if self.settings.storage_url and job.log_path:
            try:
                self.settings.push([self.settings.local(job.log_path)])
            except StorageError as exc:
                self.log(f"job {job.id}: its log stays on this machine: {exc}", logging.WARNING)

    def _stop_all(self, status: str | None, error: str | None) -> None:
        """Stop every running job; record ``status`` for those still running (None: leave them to recovery)."""
        for r in list(self.running.values()):
            self._stop_child(r.child)
            if status is not None:
                queue.finish(self.settings, r.job.id, status, error=error.format(job=r.job.id))
            self._ended(r, record=status is not None)

    @staticmethod
    def _stop_child(child: subprocess.Popen, grace: float = 5.0) -> None:
        """SIGTERM to the job's process group (the runner, or torchrun and every rank), SIGKILL after ``grace``."""
        if child.poll() is not None:
            return
        _signal_group(child, signal.SIGTERM)
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait()
        _signal_group(child, signal.SIGKILL)  # a rank that outlived torchrun

    def request_stop(self, signum, frame) -> None:
        self.stopping = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps: the device this worker's jobs use")
    parser.add_argument("--slots", type=int, default=1, metavar="N",
                        help="jobs (or DDP ranks of one job) it runs at once on a CPU or on the one device named; a "
                             "worker of cuda runs one per GPU (default 1)")
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
        if args.slots < 1:
            raise ValueError("--slots must be at least 1")
        worker = JobWorker(Settings.from_env(), args.device, args.poll, args.stale_after, args.cancel_grace,
                           args.with_dashboards, args.dashboards_gone_after, args.slots)
        signal.signal(signal.SIGTERM, worker.request_stop)
        signal.signal(signal.SIGINT, worker.request_stop)
        return worker.run(once=args.once)
    except Exception as exc:  # noqa: BLE001 - one readable line, e.g. the database cannot be reached
        log.error("%s: %s", type(exc).__name__, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
