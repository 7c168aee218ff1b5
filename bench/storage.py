"""What a bucket instead of a local folder costs: import N synthetic images, then train on them in a worker, once
with everything in the data directory and once through a real S3 server on 127.0.0.1 (moto's server in a process of
its own, driven by s3fs) with the worker on "another machine" (an empty data directory that pulls every image), side by side
in one run.

    python -m bench.storage [--n 2000] [--epochs 2] [--repeats 3]

The two sides run in turn ``--repeats`` times (a fresh bucket prefix each time) and each figure is the median, since
one epoch's time alone varies by more than the storage costs. Prints one JSON line per side (import seconds, train job
seconds from submit to its end, total) and the overhead of the bucket side, in seconds and as a share.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import CACHE, ROOT, emit, synthetic

BUCKET = "hwr-bench"


def side(name: str, images: Path, epochs: int, storage_url: str | None, run: int = 0) -> dict:
    from db import catalog
    from db.settings import Settings
    from jobs import queue

    base = CACHE / f"storage-{name}-{run}"  # a fresh database file each run (engines are cached by URL)
    shutil.rmtree(base, ignore_errors=True)
    a = Settings(data_dir=base / "machine-a", database_url=f"sqlite:///{base / 'hwr.db'}", storage_url=storage_url)
    worker_dir = base / "machine-b" if storage_url else a.data_dir
    started = time.perf_counter()
    catalog.import_dataset(a, images, "synth", "synthetic")
    imported = time.perf_counter()
    job = queue.submit(a, "train", {"datasets": ["synth"], "config": {"epochs": epochs, "batch_size": 32,
                                                                       "augment": False, "device": "cpu"}})
    env = {**os.environ, "HWR_DATA_DIR": str(worker_dir), "HWR_DATABASE_URL": a.database_url,
           "HWR_STORAGE_URL": storage_url or ""}
    subprocess.run([sys.executable, "-m", "jobs.worker", "--once", "--device", "cpu", "--poll", "0.2"], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    done = time.perf_counter()
    status = queue.job_status(a, job)["status"]
    assert status == "succeeded", queue.job_status(a, job)["error"]
    return {"side": name, "import_s": round(imported - started, 2), "train_job_s": round(done - imported, 2),
            "total_s": round(done - started, 2)}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="synthetic images imported and trained on")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side, taken in turn; figures are medians")
    args = ap.parse_args()
    import boto3

    for var, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(var, value)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.environ["HWR_S3_ENDPOINT"] = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=os.environ["HWR_S3_ENDPOINT"])
        for _ in range(100):  # the server takes a moment to listen
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        images = synthetic(args.n)
        runs = [(side("local", images, args.epochs, None, r),
                 side("s3", images, args.epochs, f"s3://{BUCKET}/run{r}", r))
                for r in range(args.repeats)]
        local, bucket = (_median([run[i] for run in runs]) for i in (0, 1))
    finally:
        server.terminate()
        server.wait(timeout=30)
    for r in (local, bucket):
        emit("storage", n=args.n, epochs=args.epochs, **r)
    emit("storage.overhead", import_ratio=round(bucket["import_s"] / local["import_s"], 3),
         train_job_ratio=round(bucket["train_job_s"] / local["train_job_s"], 3),
         total_overhead_s=round(bucket["total_s"] - local["total_s"], 2),
         total_overhead_pct=round(100 * (bucket["total_s"] / local["total_s"] - 1), 1), repeats=args.repeats)


def _median(runs: list[dict]) -> dict:
    return {k: (statistics.median(r[k] for r in runs) if k != "side" else v) for k, v in runs[0].items()}


if __name__ == "__main__":
    main()
