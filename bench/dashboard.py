"""Dashboard figures: server time of each page (first load and rerun) with 100,000 predictions in the database, and
the draw-to-prediction latency on CPU (canvas pixels -> image -> preprocessing -> beam search top-5, without and
with the names language model).

    python -m bench.dashboard [--rows 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.common import ROOT, emit

PAGES = ("overview", "data", "train", "review", "draw", "models", "settings")


def tiny_model(data_dir: Path) -> Path:
    """A real small-preset checkpoint, trained for one epoch on 300 synthetic names (a few seconds)."""
    from ocr.data.datasets import holdout_split, import_kaggle
    from ocr.data.synth import generate
    from ocr.training.loop import TrainConfig, fit

    folder = generate(data_dir / "synth", 300, seed=0)
    train, val = holdout_split(import_kaggle(folder).samples, 0.1, 0)
    out = data_dir / "runs" / "bench"
    fit(train, val, out, TrainConfig(epochs=1, batch_size=32), progress=False)
    return folder


def drawing(rng: np.random.Generator) -> np.ndarray:
    """Canvas-like RGBA pixels (720x120, transparent paper) with a few pen strokes."""
    im = Image.new("RGBA", (720, 120), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    x = 40
    for _ in range(int(rng.integers(4, 9))):
        pts = [(x + int(rng.integers(0, 40)), int(rng.integers(15, 105))) for _ in range(4)]
        d.line(pts, fill=(26, 26, 26, 255), width=6, joint="curve")
        x += 70
    return np.asarray(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hwr-bench-dash-"))
    os.environ.update({"HWR_DATA_DIR": str(tmp / "data"), "HWR_START_WORKER": "0", "HWR_DEFAULT_DATA": "0"})
    os.environ.pop("HWR_DATABASE_URL", None)
    from streamlit.testing.v1 import AppTest

    from bench.jobs_db import fill_predictions
    from dashboard.drawing import to_image
    from db.engine import session
    from db.models import Model
    from db.settings import Settings

    s = Settings.from_env()
    synth = tiny_model(s.data_dir)
    image = s.relative(next((synth / "train_v2" / "train").glob("*.jpg")))
    model_id, fill_s = fill_predictions(s, args.rows, image_path=image)
    with session(s, write=True) as db:
        db.get(Model, model_id).path = "runs/bench/best.pt"
    emit("dashboard.setup", rows=args.rows, fill_s=round(fill_s, 1))

    app = str(ROOT / "dashboard" / "app.py")
    for page in PAGES:
        at = AppTest.from_file(app, default_timeout=120).run()
        path = str(ROOT / "dashboard" / "app_pages" / f"{page}.py")
        t = time.perf_counter()
        at.switch_page(path).run()
        first = time.perf_counter() - t
        assert not at.exception, at.exception
        reruns = []
        for _ in range(args.runs):
            t = time.perf_counter()
            at.run()
            reruns.append(time.perf_counter() - t)
        emit("dashboard.page", page=page, rows=args.rows, first_load_ms=round(first * 1e3),
             rerun_p50_ms=round(statistics.median(reruns) * 1e3), rerun_max_ms=round(max(reruns) * 1e3),
             note="AppTest, server side (script run), no browser")

    from dashboard.state import decoder as page_decoder
    from dashboard.state import load_recognizer
    from ocr.decoding.decoder import DecoderConfig

    rec = load_recognizer(s, model_id)
    for config in (DecoderConfig(beam=10), DecoderConfig(beam=10, lm="names")):  # the Draw page's two decoders
        reader, decoder = page_decoder(rec.alphabet.chars, config), f"{config.describe()} top5"
        rng = np.random.default_rng(0)
        times = []
        for i in range(220):
            pixels = drawing(rng)
            t = time.perf_counter()
            pred = rec.read_prepared([rec.prepare(to_image(pixels))], reader)[0]
            if i >= 20:  # warm-up
                times.append(time.perf_counter() - t)
        times.sort()
        emit("dashboard.draw_to_prediction", n=len(times), p50_ms=round(times[len(times) // 2] * 1e3, 2),
             p95_ms=round(times[int(len(times) * 0.95)] * 1e3, 2), decoder=decoder, last=pred.text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
