"""``python -m jobs.worker [--device DEV] [--once]``: claims queued jobs and runs each in a child process.

The worker records its own heartbeat and the running job's every couple of seconds, enforces cancel requests
(the child is asked to stop within a batch; it is killed if it has not stopped after a grace period), and on start
marks jobs whose worker died as interrupted. Several workers can share one database (one per GPU, or several
machines on PostgreSQL); a job is claimed by exactly one of them.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import update

from db.engine import get_engine, session
from db.models import Job, Worker, utcnow
from db.settings import Settings
from jobs import queue

HEARTBEAT_S = 2.0
CANCEL_GRACE_S = 10.0
ROOT = Path(__file__).resolve().parent.parent


def resolve_device(name: str) -> str:
    if name != "auto":
        return name
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
    except ImportError:
        pass
    return "cpu"


class JobWorker:
    def __init__(self, settings: Settings, device: str = "auto", poll: float = 1.0, stale_after: float = queue.STALE_AFTER_S,
                 cancel_grace: float = CANCEL_GRACE_S):
        self.settings = settings
        self.device = resolve_device(device)
        self.poll = poll
        self.stale_after = stale_after
        self.cancel_grace = cancel_grace
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = False
        self.child: subprocess.Popen | None = None

    def log(self, text: str) -> None:
        print(f"[worker {self.id}] {text}", flush=True)

    def register(self) -> None:
        get_engine(self.settings)
        with session(self.settings, write=True) as s:
            s.add(Worker(id=self.id, host=socket.gethostname(), pid=os.getpid(), device=self.device))
        for job_id in queue.recover(self.settings, self.stale_after):
            self.log(f"job {job_id} marked interrupted (its worker is gone)")

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
                self.beat(None)
                if time.monotonic() - last_recover > 60:
                    queue.recover(self.settings, self.stale_after)
                    last_recover = time.monotonic()
                job = queue.claim(self.settings, self.id, self.device)
                if job is None:
                    if once:
                        break
                    time.sleep(self.poll)
                    continue
                self.run_job(job)
                ran += 1
        finally:
            with session(self.settings, write=True) as s:
                s.execute(update(Worker).where(Worker.id == self.id).values(stopped_at=utcnow(), job_id=None))
        self.log(f"stopped after {ran} job(s)")
        return 0

    def run_job(self, job: Job) -> None:
        log_path = self.settings.resolve(job.log_path or f"logs/job-{job.id}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log(f"job {job.id} ({job.kind}) started, log {log_path}")
        with log_path.open("ab") as log:
            self.child = subprocess.Popen(
                [sys.executable, "-m", "jobs.runner", str(job.id), "--parent", str(os.getpid()), "--device", self.device],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
                env={**os.environ, "HWR_DATA_DIR": str(self.settings.data_dir),
                     "HWR_DATABASE_URL": self.settings.database_url, "PYTHONUNBUFFERED": "1"})
        child = self.child
        cancel_at: float | None = None
        try:
            while child.poll() is None:
                self.beat(job.id)
                cancel = queue.heartbeat(self.settings, job.id, pid=child.pid)
                if cancel and cancel_at is None:
                    cancel_at = time.monotonic()
                    self.log(f"job {job.id}: cancel requested")
                if cancel_at is not None and time.monotonic() - cancel_at > self.cancel_grace:
                    self.log(f"job {job.id}: did not stop within {self.cancel_grace:.0f} s, killing it")
                    self._stop_child(child)
                    queue.finish(self.settings, job.id, "cancelled",
                                 error=f"cancelled (killed after {self.cancel_grace:.0f} s grace)")
                    break
                if self.stopping:
                    self._stop_child(child)
                    queue.finish(self.settings, job.id, "interrupted",
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
        code = child.returncode
        if queue.finish(self.settings, job.id, "failed",
                        error=f"the job process exited with code {code} before reporting a result; see its log"):
            self.log(f"job {job.id}: process ended with code {code} without a status, marked failed")
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
    args = parser.parse_args(argv)
    try:
        worker = JobWorker(Settings.from_env(), args.device, args.poll, args.stale_after, args.cancel_grace)
        signal.signal(signal.SIGTERM, worker.request_stop)
        signal.signal(signal.SIGINT, worker.request_stop)
        return worker.run(once=args.once)
    except Exception as exc:  # noqa: BLE001 - one readable line, e.g. the database cannot be reached
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
