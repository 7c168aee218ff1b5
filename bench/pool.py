"""A predict job over the real unlabelled pool: the 10,500 shared crops imported as a dataset, the starter model
registered, one ``predict`` job run by a real worker (its own child process), as the dashboard's Label next runs it.

    python -m bench.pool [--n 10500] [--runs 2]

Prints, per run and engine (``auto``: onnxruntime, the model's ONNX file being there as it is for the shipped model
and for every model a training job registers; then ``torch``, forced), the job's own seconds (its row's start to its
end: loading the model, reading every image, storing a prediction and an embedding per image), the worker's seconds
from start to exit, and images per second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime

from bench.common import CACHE, REAL, ROOT, emit


def setup(n: int):
    from db import catalog
    from db.registry import register_shipped_model
    from db.settings import Settings
    from ocr.sharing import STARTER

    base = CACHE / "pool"
    shutil.rmtree(base, ignore_errors=True)
    source = base / "source"
    source.mkdir(parents=True)
    for f in sorted((REAL / "unlabelled" / "train_v2" / "train").glob("*.jpg"))[:n]:
        shutil.copy(f, source / f.name)
    settings = Settings(data_dir=base / "data", database_url=f"sqlite:///{base / 'hwr.db'}")
    catalog.import_dataset(settings, source, "pool", "upload")
    (settings.data_dir / "models").mkdir(parents=True, exist_ok=True)
    return settings, register_shipped_model(settings, STARTER)


def run(settings, model: int, index: int, engine: str) -> dict:
    from jobs import queue

    job = queue.submit(settings, "predict", {"model": model, "dataset": "pool", "engine": engine})
    env = {**os.environ, "HWR_DATA_DIR": str(settings.data_dir), "HWR_DATABASE_URL": settings.database_url}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.worker", "--once", "--device", "cpu", "--poll", "0.1"], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    worker_s = time.perf_counter() - t
    status = queue.job_status(settings, job)
    assert status["status"] == "succeeded", status["error"]
    job_s = (datetime.fromisoformat(status["finished_at"]) - datetime.fromisoformat(status["started_at"])).total_seconds()
    return {"run": index, "images": status["result"]["n"], "engine": status["result"]["engine"],
            "job_s": round(job_s, 2), "worker_s": round(worker_s, 2),
            "images_per_s": round(status["result"]["n"] / job_s)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_500)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    if not (REAL / "unlabelled").is_dir():
        raise SystemExit(f"no unlabelled pool under {REAL}")
    settings, model = setup(args.n)
    for i in range(args.runs):
        for engine in ("auto", "torch"):
            emit("pool.predict", **run(settings, model, i, engine))


if __name__ == "__main__":
    main()
