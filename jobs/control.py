"""Starting a worker in the background from Python (the dashboard does this, so nobody opens a second terminal)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from db.settings import Settings
from jobs.queue import alive_workers

ROOT = Path(__file__).resolve().parent.parent


def worker_alive(settings: Settings) -> bool:
    return bool(alive_workers(settings))


def start_worker(settings: Settings, device: str = "auto", extra_args: list[str] | None = None) -> subprocess.Popen:
    """A detached ``python -m jobs.worker`` (own session: it survives the caller's reruns, not a reboot), logging to
    ``DATA_DIR/logs/worker.log``."""
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "worker.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "jobs.worker", "--device", device, *(extra_args or [])],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                start_new_session=True,
                                env={**os.environ, "HWR_DATA_DIR": str(settings.data_dir),
                                     "HWR_DATABASE_URL": settings.database_url})


def ensure_worker(settings: Settings, device: str = "auto") -> subprocess.Popen | None:
    """Start a worker unless one is alive; returns the new process, or None."""
    return None if worker_alive(settings) else start_worker(settings, device)
