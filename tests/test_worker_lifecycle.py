"""A worker's life beside the things it depends on: its database file deleted or replaced, the dashboards that started
it gone, dying under a dashboard (reaped and replaced), and logs that say when and how bad every line is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from db.settings import Settings
from jobs import queue
from tests.conftest import PY, ROOT, process_state, stop_process, wait_for

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")


@pytest.fixture
def sqlite_settings(tmp_path, monkeypatch) -> Settings:
    data_dir = tmp_path / "data"
    url = f"sqlite:///{data_dir / 'hwr.db'}"
    monkeypatch.setenv("HWR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HWR_DATABASE_URL", url)
    yield Settings(data_dir=data_dir, database_url=url, import_roots=(tmp_path,))
    from db.engine import dispose_engines

    dispose_engines()


def _worker(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "jobs.worker", "--poll", "0.2", *args], cwd=ROOT, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_worker_exits_when_its_database_goes_away(sqlite_settings, tmp_path, how):
    from db.engine import dispose_engines, get_engine

    get_engine(sqlite_settings)
    log = tmp_path / "worker.log"
    proc = _worker(log=log)
    try:
        wait_for(lambda: queue.alive_workers(sqlite_settings), 30, "the worker's first heartbeat")
        dispose_engines()
        if how == "deleted":
            shutil.rmtree(sqlite_settings.data_dir)
        else:
            moved = tmp_path / "old-data"
            sqlite_settings.data_dir.rename(moved)
            shutil.copytree(moved, sqlite_settings.data_dir)
        assert proc.wait(timeout=30) == 3
    finally:
        stop_process(proc)
    text = log.read_text()
    assert re.search(r"ERROR +jobs.worker: .*the (data directory|database file) .* (is gone|was replaced by another): "
                     "this worker stops claiming jobs and exits", text), text
    assert how == "replaced" or not sqlite_settings.data_dir.exists()  # nothing recreated in its place
    assert all(LOG_LINE.match(line) for line in text.splitlines() if line.strip()), text


def test_worker_started_by_a_dashboard_ends_when_no_dashboard_is_left(sqlite_settings, tmp_path):
    from jobs.control import live_dashboards

    folder = sqlite_settings.data_dir / "dashboards"
    folder.mkdir(parents=True)
    dashboard = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])  # stands in for a dashboard's pid
    try:
        import socket

        from jobs.control import _process

        (folder / f"{socket.gethostname()}-{dashboard.pid}").write_text(_process(dashboard.pid)[1])
        (folder / f"{socket.gethostname()}-999999999").write_text("1")  # a dashboard long dead
        assert live_dashboards(sqlite_settings) == [dashboard.pid]
        assert not (folder / f"{socket.gethostname()}-999999999").exists()
        log = tmp_path / "worker.log"
        proc = _worker("--with-dashboards", "--dashboards-gone-after", "1", log=log)
        try:
            wait_for(lambda: queue.alive_workers(sqlite_settings), 30, "the worker's first heartbeat")
            time.sleep(2.5)
            assert proc.poll() is None  # its dashboard lives
            stop_process(dashboard)
            assert proc.wait(timeout=30) == 0
        finally:
            stop_process(proc)
        assert "no dashboard has been alive for 1 s and no job is waiting" in log.read_text()
        # a worker started by hand is not affected
        hand = _worker(log=tmp_path / "hand.log")
        try:
            wait_for(lambda: queue.alive_workers(sqlite_settings), 30, "the hand-started worker")
            time.sleep(2.5)
            assert hand.poll() is None
        finally:
            stop_process(hand)
    finally:
        stop_process(dashboard)


def test_a_queued_job_keeps_a_dashboard_worker_alive(sqlite_settings, tmp_path):
    from jobs.worker import JobWorker

    queue.submit(sqlite_settings, "synth", {"n": 1, "name": "s"})  # no worker runs it: it stays queued
    worker = JobWorker(sqlite_settings, "cpu", with_dashboards=True, dashboards_gone_after=0.0)
    time.sleep(0.05)
    assert not worker.dashboards_gone()
    queue.request_cancel(sqlite_settings, queue.list_jobs(sqlite_settings)[0]["id"])
    time.sleep(0.05)
    assert worker.dashboards_gone()


def test_dashboard_reaps_its_dead_worker_and_starts_another(sqlite_settings):
    from jobs.control import DashboardWorker

    holder = DashboardWorker(sqlite_settings, "cpu")
    first = holder.ensure()
    try:
        wait_for(lambda: queue.alive_workers(sqlite_settings), 30, "the first worker")
        first.kill()
        # dead and waiting to be reaped (WNOWAIT leaves that to the dashboard)
        wait_for(lambda: os.waitid(os.P_PID, first.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None, 10, "the kill")
        # the worker row still looks alive for a few seconds; recover() marks it stopped since its pid is gone
        queue.recover(sqlite_settings)
        second = holder.ensure()
        assert second is not first and first.returncode is not None  # reaped: no zombie left under the dashboard
        assert not Path(f"/proc/{first.pid}").exists() or process_state(first.pid) is None
        wait_for(lambda: queue.alive_workers(sqlite_settings), 30, "the second worker")
        assert holder.ensure() is second
    finally:
        for proc in (first, holder.proc):
            if proc is not None:
                stop_process(proc)


def test_job_logs_carry_a_timestamp_and_a_level_on_every_line(sqlite_settings, tmp_path):
    job_id = queue.submit(sqlite_settings, "synth", {"n": 3, "name": "tiny", "validation": 0})
    proc = _worker("--once", log=tmp_path / "worker.log")
    try:
        assert proc.wait(timeout=120) == 0
    finally:
        stop_process(proc)
    assert queue.job_status(sqlite_settings, job_id)["status"] == "succeeded"
    for path in (tmp_path / "worker.log", sqlite_settings.resolve(queue.job_status(sqlite_settings, job_id)["log"])):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines and all(LOG_LINE.match(line) for line in lines), path.read_text()
    assert f"INFO    jobs.runner: job {job_id}: succeeded" in sqlite_settings.resolve(
        queue.job_status(sqlite_settings, job_id)["log"]).read_text()
