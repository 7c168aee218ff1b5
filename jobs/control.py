"""Starting a worker in the background from Python (the dashboard does this, so nobody opens a second terminal), and
the dashboards' presence that such a worker lives by."""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from db.settings import Settings
from jobs.queue import alive_workers

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("jobs.control")


def worker_alive(settings: Settings) -> bool:
    return bool(alive_workers(settings))


def start_worker(settings: Settings, device: str = "auto", extra_args: list[str] | None = None) -> subprocess.Popen:
    """A detached ``python -m jobs.worker`` (own session: it survives the caller's reruns, not a reboot), logging to
    ``DATA_DIR/logs/worker.log``."""
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "worker.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "jobs.worker", "--device", device, *(extra_args or [])],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                start_new_session=True,
                                env={**os.environ, "HWR_DATA_DIR": str(settings.data_dir),
                                     "HWR_DATABASE_URL": settings.database_url})


def ensure_worker(settings: Settings, device: str = "auto") -> subprocess.Popen | None:
    """Start a worker unless one is alive; returns the new process, or None."""
    return None if worker_alive(settings) else start_worker(settings, device)


class DashboardWorker:
    """The worker a dashboard server starts: reaped when it dies (no zombie under the dashboard) and started again
    when no worker is alive; it exits by itself once no dashboard has been alive for a while (``--with-dashboards``)."""

    def __init__(self, settings: Settings, device: str = "auto"):
        self.settings, self.device = settings, device
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.checked_at = -math.inf

    def ensure(self, every: float = 0.0) -> subprocess.Popen | None:
        """Reap a dead worker and start one when none is alive; at most once per ``every`` seconds."""
        with self.lock:
            if time.monotonic() - self.checked_at < every:
                return self.proc
            self.checked_at = time.monotonic()
            return self._ensure()

    def _ensure(self) -> subprocess.Popen | None:
        if self.proc is not None and self.proc.poll() is not None:  # poll() reaps it
            log.warning("the dashboard's worker (pid %s) ended with code %s", self.proc.pid, self.proc.returncode)
            self.proc = None
        if self.proc is None and not worker_alive(self.settings):
            self.proc = start_worker(self.settings, self.device, ["--with-dashboards"])
            log.info("started a worker (pid %s)", self.proc.pid)
        return self.proc


# --- dashboards' presence: one file per dashboard server process under DATA_DIR/dashboards/ -----------------------

def _process(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of a process (Linux); None when it is gone. The start
    time tells a reused pid from the dashboard that wrote it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def register_dashboard(settings: Settings) -> Path:
    """Record this process as a live dashboard of the data directory (removed at exit, or by a worker once it is dead)."""
    import atexit

    folder = settings.data_dir / "dashboards"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{socket.gethostname()}-{os.getpid()}"
    path.write_text((_process(os.getpid()) or ("", ""))[1])
    atexit.register(lambda: path.unlink(missing_ok=True))
    return path


def live_dashboards(settings: Settings) -> list[int]:
    """Pids of the dashboards of this data directory alive on this host; files of dead ones are removed."""
    folder = settings.data_dir / "dashboards"
    host = socket.gethostname()
    alive = []
    for path in folder.glob(f"{host}-*") if folder.is_dir() else []:
        pid_text = path.name.removeprefix(f"{host}-")
        if not pid_text.isdigit():
            continue
        proc = _process(int(pid_text))
        try:
            started = path.read_text().strip()
        except OSError:
            continue
        if proc is not None and proc[0] not in ("Z", "X") and (not started or proc[1] == started):
            alive.append(int(pid_text))
        else:
            path.unlink(missing_ok=True)
    return alive
