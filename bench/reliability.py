"""Reliability figures: label corrections from several processes while a training job writes to the same database,
then ``kill -9`` of the worker in the middle of that job (interrupted, no orphan process, resumed to the end).

    python -m bench.reliability [--url postgresql+psycopg://...] [--processes 4] [--corrections 270]

The bad-input matrix is a test suite, not a figure: ``python -m pytest tests/test_bad_inputs.py
tests/test_worker_lifecycle.py -q`` (each case asserts the message and that nothing was written).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, emit
from db.models import JobStatus


def _letters(n: int, width: int = 6) -> str:
    """A distinct label in the alphabet for every n (so no correction is a no-op)."""
    out = ""
    for _ in range(width):
        n, d = divmod(n, 26)
        out += chr(65 + d)
    return out


def corrector(index: int, count: int, seed: int) -> None:
    """One process: ``count`` corrections of random samples as user ``bench-INDEX``; prints a JSON summary."""
    from db import corrections
    from db.catalog import training_items
    from db.settings import Settings

    settings = Settings.from_env()
    ids = [it.sample_id for it in training_items(settings, ["synth"], ["train", "validation"])]
    rng = random.Random(seed + index)
    errors: dict[str, int] = {}
    done, times = 0, []
    for i in range(count):
        t = time.perf_counter()
        try:
            corrections.correct_label(settings, rng.choice(ids), _letters(index * 1_000_003 + i), user=f"bench-{index}")
            done += 1
        except Exception as exc:  # noqa: BLE001 - counted: the figure is how many there are
            key = f"{type(exc).__name__}: {str(exc)[:80]}"
            errors[key] = errors.get(key, 0) + 1
        times.append(time.perf_counter() - t)
    times.sort()
    print(json.dumps({"done": done, "errors": errors, "p50_ms": times[len(times) // 2] * 1e3,
                      "p95_ms": times[int(len(times) * 0.95)] * 1e3}), flush=True)


def _wait(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--corrections", type=int, default=270, help="per process")
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--corrector", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.corrector is not None:
        return corrector(args.corrector, args.corrections, 0)

    from sqlalchemy import func, select

    from db import catalog
    from db.engine import session
    from db.models import LabelEdit
    from db.settings import Settings
    from jobs import queue
    from ocr.data.synth import generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = Settings(tmp / "data", args.url or f"sqlite:///{tmp / 'data' / 'hwr.db'}")
        env = {**os.environ, "HWR_DATA_DIR": str(settings.data_dir), "HWR_DATABASE_URL": settings.database_url}
        generate(tmp / "synth", args.images, seed=0)
        generate(tmp / "synth", max(20, args.images // 10), seed=1, split="validation")
        catalog.import_dataset(settings, tmp / "synth", "synth", "synthetic")
        job_id = queue.submit(settings, "train", {"datasets": ["synth"], "config": {"epochs": 25, "batch_size": 32}})
        worker = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--poll", "0.2", "--device", "cpu"], cwd=ROOT,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: queue.latest_metrics(settings, job_id).get("step"), 180, "the training job's first steps")
            t0 = time.monotonic()
            procs = [subprocess.Popen([sys.executable, "-m", "bench.reliability", "--corrector", str(i),
                                       "--corrections", str(args.corrections)], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, text=True) for i in range(args.processes)]
            results = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
            seconds = time.monotonic() - t0
            status = queue.job_status(settings, job_id)["status"]
            with session(settings) as s:
                edits = s.scalar(select(func.count()).select_from(LabelEdit).where(LabelEdit.user_name.like("bench-%")))
            errors: dict[str, int] = {}
            for r in results:
                for k, v in r["errors"].items():
                    errors[k] = errors.get(k, 0) + v
            emit("reliability.concurrent_corrections", backend=settings.database_url.split(":")[0],
                 processes=args.processes, attempted=args.processes * args.corrections,
                 applied=sum(r["done"] for r in results), audit_rows=edits, errors=errors,
                 database_locked=sum(v for k, v in errors.items() if "locked" in k), seconds=round(seconds, 1),
                 p95_ms=round(max(r["p95_ms"] for r in results), 1), training_job_during=status)

            # kill -9 of the worker while its job trains: interrupted, its child gone, then resumed to the end
            job = _wait(lambda: (j := queue.job_status(settings, job_id))["metrics"].get("epoch") and j, 300,
                        "a finished epoch")
            child = _wait(lambda: _children(worker.pid), 10, "the job's process")[0]
            epoch_at_kill = job["metrics"]["epoch"]
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            t_kill = time.monotonic()
            _wait(lambda: _gone(child), 30, "the job's process to end after its worker")
            child_gone_s = time.monotonic() - t_kill
            after = _wait(lambda: (j := queue.job_status(settings, job_id))["status"] != JobStatus.RUNNING and j, 30,
                          "the job's status")
            queue.resume(settings, job_id)
            worker = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--poll", "0.2", "--device", "cpu"],
                                      cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            final = _wait(lambda: (j := queue.job_status(settings, job_id))["finished"] and j, 900, "the resumed job")
            emit("reliability.kill9_worker", epoch_at_kill=epoch_at_kill, status_after_kill=after["status"],
                 orphan_process=not _gone(child), child_ended_after_s=round(child_gone_s, 2),
                 resumed_status=final["status"], epochs=final["metrics"].get("epoch"), error=final["error"])
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    main()
