"""Shared fixtures: real data location, small synthetic datasets, trained checkpoints, databases (SQLite files and a
throwaway PostgreSQL server), worker processes."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("HWR_REAL_DATA", ROOT.parent / "shared" / "data" / "kaggle-names"))
PY = sys.executable


def pytest_configure(config):
    os.environ.setdefault("HWR_CACHE_DIR", str(ROOT / "data" / "cache"))  # names table extracted once per checkout
    # a fresh database starts without a model in tests (the shipped starter has its own tests)
    os.environ["HWR_STARTER_MODEL"] = "0"
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one core each: two workers' torch threads must not fight for two cores
        os.environ["OMP_NUM_THREADS"] = "1"
    else:  # the names caches of a fresh checkout (~40 s), built once beside the first tests instead of by one of them
        config.cache_warmer = subprocess.Popen([PY, "-c", WARM_CACHES], cwd=ROOT, stdout=subprocess.DEVNULL)


WARM_CACHES = """
from ocr.data.names import load_table
load_table()
from ocr.decoding.charlm import CharLM
from ocr.decoding.lexicon import Lexicon
CharLM.names()
Lexicon.names()
"""


def pytest_unconfigure(config):
    warmer = getattr(config, "cache_warmer", None)
    if warmer is not None:
        stop_process(warmer, grace=5)


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most four (each test may start a worker, a server or a browser too; three
    workers on two cores were slower and timed out a job's end)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not (REAL / "written_name_validation_v2.csv").exists():
        pytest.skip(f"real Kaggle sample not found at {REAL} (set HWR_REAL_DATA to run these tests)")
    return REAL


def _once(tmp_path_factory, name: str, make) -> Path:
    """A session fixture's folder, built once per test run: under pytest-xdist the first worker builds it under a file
    lock and the others wait for it and reuse it (the run's shared temporary root; each run has its own)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = root / f"once-{name}", root / f"once-{name}.done"
    with FileLock(str(root / f"once-{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """200 synthetic images in Kaggle layout."""
    from ocr.data.synth import generate

    return _once(tmp_path_factory, "synth", lambda folder: generate(folder, 200, seed=0))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synth_dir) -> Path:
    """A small model trained for a couple of epochs: real training, a real checkpoint."""
    from ocr.data.datasets import holdout_split, import_kaggle
    from ocr.training.loop import TrainConfig, fit

    def make(out: Path) -> None:
        train, val = holdout_split(import_kaggle(synth_dir).samples, 0.1, 0)
        fit(train, val, out, TrainConfig(epochs=2, batch_size=32, log_every=2), progress=False)

    return _once(tmp_path_factory, "trained", make) / "best.pt"


@pytest.fixture(scope="session")
def learned(tmp_path_factory, synth_dir) -> tuple[Path, list[float]]:
    """The small preset trained until it has memorised 64 synthetic samples: (best.pt, validation exact match per epoch)."""
    from ocr.data.datasets import import_kaggle
    from ocr.training.loop import Callback, TrainConfig, fit

    def make(out: Path) -> None:
        samples = import_kaggle(synth_dir).samples[:64]
        exact: list[float] = []

        class StopWhenLearned(Callback):
            def on_epoch(self, m):
                exact.append(m["val_exact_match"])

            def should_stop(self):
                return bool(exact) and exact[-1] >= 0.95

        fit(samples, samples, out, TrainConfig(epochs=300, batch_size=8, lr=5e-3, augment=False, log_every=50),
            callback=StopWhenLearned(), progress=False)
        (out / "exact.json").write_text(json.dumps(exact))

    out = _once(tmp_path_factory, "learned", make)
    return out / "best.pt", json.loads((out / "exact.json").read_text())


def import_pool(settings, folder: Path, name: str, n: int, seed: int) -> Path:
    """``n`` fresh synthetic images with no labels file, imported as dataset ``name``: an unlabelled pool."""
    from db import catalog
    from ocr.data.synth import generate

    folder.mkdir(parents=True)
    for f in (generate(folder.parent / f"{folder.name}-source", n, seed=seed) / "train_v2" / "train").glob("*.jpg"):
        shutil.move(f, folder / f.name)
    catalog.import_dataset(settings, folder, name, "upload")
    return folder


# --- databases ---------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on 127.0.0.1 for this test session (Debian's postgresql package), or a skip."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
    bindir = Path(bins[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="hwr-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(base, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    try:
        subprocess.run([*as_postgres, bindir / "initdb", "-D", base / "data", "-U", "postgres", "-A", "trust", "-E",
                        "UTF8", "--no-locale"], check=True, capture_output=True, timeout=120)
        subprocess.run([*as_postgres, bindir / "pg_ctl", "-D", base / "data", "-l", base / "log", "-w", "-o",
                        f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True,
                       timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    subprocess.run([*as_postgres, bindir / "pg_ctl", "-D", base / "data", "-m", "immediate", "-w", "stop"],
                   capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path, monkeypatch):
    """Settings of a fresh data directory and database, on each backend; also exported to the environment so
    processes started by the test use them."""
    from db.settings import Settings

    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'hwr.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"t_{uuid.uuid4().hex[:12]}"
        import psycopg

        with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        url = f"{server}/{name}"
    monkeypatch.setenv("HWR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HWR_DATABASE_URL", url)
    monkeypatch.setenv("HWR_IMPORT_ROOTS", str(tmp_path))
    yield Settings(data_dir=data_dir, database_url=url, import_roots=(tmp_path,))
    from db.engine import dispose_engines

    dispose_engines()


def process_state(pid: int) -> str | None:
    """The process's state letter from /proc (None when it is gone; a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if state in ("Z", "X") else state


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def workers():
    """Start ``python -m jobs.worker`` processes; each is ended by its own pid at the end of the test."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        log = tempfile.NamedTemporaryFile(prefix="hwr-worker-", suffix=".log", delete=False)
        proc = subprocess.Popen([PY, "-m", "jobs.worker", "--poll", "0.2", *args], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
        proc.log_path = log.name
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM to this process by its pid, SIGKILL after ``grace`` seconds; bounded in time either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def populate(settings, synth_dir: Path, trained: Path) -> dict:
    """A database with the synthetic dataset, a finished training job with its model, and that model's predictions."""
    from db import catalog
    from db.registry import adopt_checkpoint
    from jobs.context import JobContext
    from jobs.kinds.reading import run_evaluate
    from jobs.queue import finish, submit

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    model_id = adopt_checkpoint(settings, trained, ["synth"], "tiny")
    params = {"model": model_id, "dataset": "synth", "split": "train"}
    eval_id = submit(settings, "evaluate", params)
    _mark_running(settings, eval_id)
    finish(settings, eval_id, "succeeded", result=run_evaluate(JobContext(settings, eval_id, params)))
    return {"settings": settings, "model_id": model_id}


def _mark_running(settings, job_id: int) -> None:
    from db.engine import session
    from db.models import Job

    with session(settings, write=True) as s:
        s.get(Job, job_id).status = "running"
