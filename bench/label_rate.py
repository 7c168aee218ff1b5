"""How fast Label next lets a person go: the page's own time per crop in a real browser (Chromium + Playwright against
``streamlit run``), with a scripted annotator on real unlabelled Kaggle crops.

    python -m bench.label_rate [--crops 30] [--person-seconds 3]

A model reads 60 real unlabelled images (the predict job, names LM), then the annotator works the queue with the
keyboard only: every third crop it types a new label, the others it accepts as read (Enter), every tenth it skips
(Esc). Per crop the time from the key to the next crop's field being ready (page idle, a new field) is the page's
latency; ``--person-seconds`` (the time a person needs to read a name and type or accept it) is added to give crops per
minute. Needs Debian's chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import CACHE, REAL, ROOT, emit

CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(settings, data_dir: Path) -> int:
    """The benchmarks' synthetic-only model when it is cached, else a one-epoch one (the page's speed is the same)."""
    from bench.dashboard import tiny_model
    from db.registry import adopt_checkpoint, register_checkpoint

    cached = CACHE / "label-errors-base-6min" / "best.pt"
    if cached.exists():
        return adopt_checkpoint(settings, cached, [], "synthetic model")
    tiny_model(data_dir)
    return register_checkpoint(settings, data_dir / "runs" / "bench" / "best.pt", "best", name="tiny")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=30)
    ap.add_argument("--person-seconds", type=float, default=3.0)
    args = ap.parse_args()
    if not CHROMIUM.exists():
        sys.exit("Debian's chromium is not installed (apt-get install chromium)")
    tmp = Path(tempfile.mkdtemp(prefix="hwr-bench-label-"))
    data_dir = tmp / "data"
    os.environ.update({"HWR_DATA_DIR": str(data_dir), "HWR_START_WORKER": "0", "HWR_DEFAULT_DATA": "0"})
    os.environ.pop("HWR_DATABASE_URL", None)
    from db import catalog
    from db.settings import Settings
    from jobs.context import JobContext
    from jobs.kinds.reading import run_predict

    settings = Settings.from_env()
    scans = tmp / "scans"
    scans.mkdir()
    for f in sorted((REAL / "unlabelled" / "train_v2" / "train").glob("*.jpg"))[:60]:
        shutil.copy(f, scans / f.name)
    catalog.import_dataset(settings, scans, "scans", "upload")
    model = _model(settings, data_dir)
    run_predict(JobContext(settings, None, {"model": model, "dataset": "scans", "lm": True}))

    port = _free_port()
    log = (tmp / "streamlit.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                               "--server.headless", "true", "--server.address", "127.0.0.1"], cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        latencies = drive(url, args.crops)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    p50 = statistics.median(latencies)
    p95 = sorted(latencies)[max(0, round(0.95 * len(latencies)) - 1)]
    emit("label_rate", crops=len(latencies), page_seconds_p50=round(p50, 2), page_seconds_p95=round(p95, 2),
         page_limited_crops_per_minute=round(60 / p50, 1), person_seconds=args.person_seconds,
         crops_per_minute=round(60 / (p50 + args.person_seconds), 1))
    shutil.rmtree(tmp, ignore_errors=True)


def drive(url: str, crops: int) -> list[float]:
    """The scripted annotator; returns the page's latency per crop (key pressed -> next crop ready)."""
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-dev-shm-usage"]
    latencies = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.set_default_timeout(30_000)
        page.goto(f"{url}/label")
        idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')

        def ready(previous: str | None) -> str:
            """Wait for one label field that is not the previous crop's; returns its id."""
            while True:
                idle.wait_for()
                fields = page.get_by_label("Label (Enter saves)")
                if fields.count() == 1 and (field_id := fields.get_attribute("id")) != previous:
                    return field_id
                time.sleep(0.02)

        current = ready(None)
        for i in range(crops):
            field = page.get_by_label("Label (Enter saves)")
            if i % 10 == 9:
                t0 = time.monotonic()
                page.keyboard.press("Escape")
            else:
                if i % 3 == 0:
                    field.fill("MARIE")
                else:
                    field.focus()
                t0 = time.monotonic()
                field.press("Enter")
            current = ready(current)
            latencies.append(time.monotonic() - t0)
        browser.close()
    return latencies


if __name__ == "__main__":
    main()
