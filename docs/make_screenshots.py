"""The README screenshots: a demo data directory (the real Kaggle sample + a trained checkpoint, evaluated), the
dashboard on a free localhost port with its own worker, and Debian's Chromium driven by Playwright.

    python docs/make_screenshots.py --checkpoint data/bench/accuracy-run-s7-self/best.pt [--out docs]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def prepare(data_dir: Path, checkpoint: Path, real: Path) -> None:
    os.environ["HWR_DATA_DIR"] = str(data_dir)
    os.environ.pop("HWR_DATABASE_URL", None)
    from db import catalog
    from db.engine import session
    from db.models import Job
    from db.registry import adopt_checkpoint, set_default
    from db.settings import Settings
    from jobs.context import JobContext
    from jobs.kinds.reading import run_evaluate
    from jobs.queue import finish, submit

    s = Settings.from_env()
    catalog.import_dataset(s, real, "kaggle-sample", "kaggle")
    catalog.import_dataset(s, real / "unlabelled", "unlabelled-pool", "upload")
    model_id = adopt_checkpoint(s, checkpoint, ["kaggle-sample"], "small, synthetic + real")
    set_default(s, model_id)
    params = {"model": model_id, "dataset": "kaggle-sample", "split": "validation", "lm": True}
    eval_id = submit(s, "evaluate", params)
    with session(s, write=True) as db:
        db.get(Job, eval_id).status = "running"  # run here, so the screenshots start from a finished evaluation
    finish(s, eval_id, "succeeded", result=run_evaluate(JobContext(s, eval_id, params)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--real", default=str(ROOT.parent / "shared" / "data" / "kaggle-names"))
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="hwr-demo-"))
    prepare(data_dir, Path(args.checkpoint).absolute(), Path(args.real))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HWR_DATA_DIR": str(data_dir), "HWR_DEFAULT_DATA": "0", "HWR_DEVICE": "cpu"}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                               "--server.headless", "true"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        shoot(url, Path(args.out))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        from db.settings import Settings
        from jobs.queue import alive_workers

        for w in alive_workers(Settings.from_env(), within=3600):
            os.kill(w.pid, signal.SIGTERM)


def shoot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="hwr-chromium-"), executable_path="/usr/bin/chromium",
                                                   headless=True, args=FLAGS, viewport={"width": 1400, "height": 1500})
        ctx.set_default_timeout(60_000)
        page = ctx.new_page()
        page.goto(f"{url}/train")
        page.get_by_role("spinbutton", name="Time budget (minutes, 0 = none)").fill("1.5")
        page.get_by_role("spinbutton", name="Batch size").fill("32")
        page.get_by_role("button", name="Start training").click()
        page.wait_for_timeout(100_000)
        page.get_by_text("Compare with").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "dashboard-train.png"))
        page.goto(f"{url}/review")
        page.get_by_text("Corrections since").wait_for()
        page.wait_for_timeout(3000)
        page.screenshot(path=str(out / "dashboard-review.png"))
        page.goto(f"{url}/draw")
        canvas = page.locator("canvas.upper-canvas").first
        box = canvas.bounding_box()
        x, y = box["x"] + 40, box["y"] + 25
        strokes = [  # P A U L in block capitals
            [(0, 70), (0, 0), (30, 0), (40, 15), (30, 32), (0, 32)],
            [(70, 70), (90, 0), (110, 70)], [(78, 42), (102, 42)],
            [(140, 0), (140, 60), (155, 70), (175, 60), (175, 0)],
            [(210, 0), (210, 70), (245, 70)],
        ]
        for stroke in strokes:
            page.mouse.move(x + stroke[0][0], y + stroke[0][1])
            page.mouse.down()
            for px, py in stroke[1:]:
                page.mouse.move(x + px, y + py, steps=6)
            page.mouse.up()
            page.wait_for_timeout(700)
        page.get_by_text("What the model sees").wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "dashboard-draw.png"))
        page.goto(f"{url}/")
        page.wait_for_timeout(4000)
        page.screenshot(path=str(out / "dashboard-overview.png"))
        ctx.close()


if __name__ == "__main__":
    main()
