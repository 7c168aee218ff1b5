"""What a running job writes about itself (progress, the data it read, metrics, its run folder, its secrets) and the
``JobContext`` every job kind's task receives. Kept apart from the queue so the kinds need no queue to run."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

from sqlalchemy import delete, insert, select, update

from db.engine import session
from db.models import Job, JobMetric, utcnow
from db.settings import Settings

log = logging.getLogger("jobs.context")


def run_dir(settings: Settings, job_id: int) -> Path:
    return settings.data_dir / "runs" / f"job-{job_id}"


def secrets_dir(settings: Settings, job_id: int) -> Path:
    return settings.data_dir / "secrets" / str(int(job_id))


def remove_secrets(settings: Settings, job_id: int) -> None:
    """Delete the job's secrets folder (only ever ``DATA_DIR/secrets/<job id>``)."""
    folder = secrets_dir(settings, job_id)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
        log.info("job %s: secrets removed", job_id)


def cancel_requested(settings: Settings, job_id: int) -> bool:
    with session(settings) as s:
        return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


@dataclass(frozen=True)
class Count:
    """The progress most kinds report: ``done`` of ``total`` ``unit``s (rows imported, images read, folds scored)."""

    done: int
    total: int
    unit: str


def set_progress(settings: Settings, job_id: int, progress: float | None = None, message: str | None = None,
                 data: dict | None = None) -> None:
    values = {}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    if message is not None:
        values["message"] = message[:2000]
    if data is not None:
        values["progress_data"] = data
    if values:
        with session(settings, write=True) as s:
            s.execute(update(Job).where(Job.id == job_id).values(**values))


def set_data(settings: Settings, job_id: int, count: int, digest: str) -> None:
    with session(settings, write=True) as s:
        s.execute(update(Job).where(Job.id == job_id).values(data_count=count, data_hash=digest, data_read_at=utcnow()))


def add_metrics(settings: Settings, job_id: int, rows: list[dict]) -> None:
    """rows: {kind, step, epoch, name, value}."""
    if rows:
        with session(settings, write=True) as s:
            s.execute(insert(JobMetric), [{"job_id": job_id, **r} for r in rows])


def clear_metrics_after(settings: Settings, job_id: int, epoch: int) -> None:
    """A resumed run replays from ``epoch``: the metrics it wrote after it are written again."""
    with session(settings, write=True) as s:
        s.execute(delete(JobMetric).where(JobMetric.job_id == job_id, JobMetric.epoch > epoch))


@dataclass
class JobContext:
    """What a task gets: its settings, id, parameters and device; progress, stop requests and the log go through it."""

    settings: Settings
    job_id: int
    params: dict
    device: str = "cpu"
    main: bool = True  # rank 0 of a job on several devices (the only one that writes its rows), or the one process
    progress_type: type = Count  # the frozen dataclass its kind declares for its structured progress
    cancelled: bool = False
    _last_check: float = 0.0
    _last_progress: float = field(default=0.0)

    def log(self, text: str, level: int = logging.INFO) -> None:
        logging.getLogger("jobs.task").log(level, "job %s: %s", self.job_id, text)

    def progress(self, fraction: float, message: str | None = None, data=None, force: bool = False) -> None:
        """``data``: an instance of the kind's progress type (pages and ``jobs status`` read its fields; the message
        is the line for people). Stored at most every half second, so a fast loop does not hammer the database; the
        last of a ``Count`` always."""
        if data is not None and not (is_dataclass(data) and isinstance(data, self.progress_type)):
            raise TypeError(f"job progress must be a {self.progress_type.__name__}, not {type(data).__name__}")
        now = time.monotonic()
        if force or now - self._last_progress > 0.5 or (isinstance(data, Count) and data.done >= data.total):
            self._last_progress = now
            set_progress(self.settings, self.job_id, fraction, message, asdict(data) if data is not None else None)

    def should_stop(self) -> bool:
        """Polls the cancel flag at most once a second."""
        now = time.monotonic()
        if not self.cancelled and now - self._last_check > 1.0:
            self._last_check = now
            self.cancelled = cancel_requested(self.settings, self.job_id)
        return self.cancelled

    def run_dir(self) -> Path:
        return run_dir(self.settings, self.job_id)
