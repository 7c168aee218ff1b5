"""The static web demo in real Chromium (Debian's, driven by Playwright) from a local static server: how big it is,
how long the page takes until the model is ready, how long a reading takes after each stroke, and how close the
in-browser logits are to PyTorch's on real crops.

    python -m bench.web_demo [--model ocr/sharing/starter] [--loads 5] [--strokes 20] [--crops 100]
    python -m bench.web_demo --int8   # int8 weights (onnxruntime dynamic quantisation) against the float model

Page load: a fresh browser context each time (no cache), from navigation to the ONNX session ready. Per stroke: from
the pen lifted to the reading shown (preprocessing + the model + beam 10 in the page), one word written stroke by
stroke. Parity: the decoded gray pixels of ``--crops`` real crops handed to the page's preprocessing and model,
against ``Recognizer.logits`` on the same pixels.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.common import REAL, emit
from ocr.sharing import STARTER

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _serve(folder: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
                               str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            return server, url
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the static server did not answer")


def int8_check(model_onnx: Path, model: str) -> None:
    """Would int8 weights be worth it? onnxruntime's dynamic quantisation of model.onnx, read greedily by onnxruntime
    on the real rows 801-1000 beside the float model: size, exact match, CER, time."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from bench.common import real_split
    from ocr.decoding.ctc import greedy_decode
    from ocr.evaluation.metrics import cer, exact_match
    from ocr.preprocess import pad_batch
    from ocr.recognize import Recognizer

    int8 = model_onnx.with_name("model.int8.onnx")
    quantize_dynamic(model_onnx, int8, weight_type=QuantType.QInt8)
    rec = Recognizer(model)
    _, val = real_split()
    batches = [pad_batch([rec.prepare(s.path) for s in val[i:i + 32]]) for i in range(0, len(val), 32)]
    labels = [s.label for s in val]
    for path in (model_onnx, int8):
        session = ort.InferenceSession(str(path))
        texts, t0 = [], time.perf_counter()
        for images, widths in batches:
            logits = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
            texts += [p.text for p in greedy_decode(logits, rec.model.output_lengths(widths), rec.alphabet)]
        emit("web_demo.int8", model=path.name, mb=round(path.stat().st_size / 1e6, 2), rows=len(val),
             greedy_exact=round(exact_match(labels, texts), 3), greedy_cer=round(cer(labels, texts), 3),
             onnxruntime_s=round(time.perf_counter() - t0, 2))
    int8.unlink()



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(STARTER))
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--strokes", type=int, default=20)
    ap.add_argument("--crops", type=int, default=100)
    ap.add_argument("--int8", action="store_true", help="only compare int8 weights with the float model")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from ocr.preprocess import load_image, to_gray
    from ocr.recognize import Recognizer
    from ocr.sharing.webdemo import export_web

    site = Path(tempfile.mkdtemp(prefix="hwr-site-"))
    built = export_web(args.model, site)
    emit("web_demo.size", model_onnx_mb=round(built["model_bytes"] / 1e6, 2),
         total_mb=round(built["total_bytes"] / 1e6, 2), files=len(built["files"]))
    if args.int8:
        int8_check(site / "model.onnx", args.model)
        return
    server, url = _serve(site)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            loads = []
            for _ in range(args.loads):
                context = browser.new_context()
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(url)
                page.wait_for_function("window.hwr && (window.hwr.ready || window.hwr.error)", timeout=60_000)
                loads.append(time.perf_counter() - t0)
                context.close()
            emit("web_demo.load", n=len(loads), p50_s=round(float(np.median(loads)), 3), max_s=round(max(loads), 3))

            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)
            page.wait_for_function("window.hwr && window.hwr.ready")
            box = page.locator("#pad").bounding_box()
            latencies = []
            for i in range(args.strokes):
                if i % 5 == 0:
                    page.get_by_role("button", name="Clear").click()
                x = box["x"] + 40 + (i % 5) * 120
                y = box["y"] + 20
                page.evaluate("window.hwr.lastLatencyMs = null")
                page.mouse.move(x, y)
                page.mouse.down()
                page.mouse.move(x + 10, y + 75, steps=8)
                page.mouse.move(x + 50, y + 75, steps=5)
                page.mouse.up()
                page.wait_for_function("window.hwr.lastLatencyMs !== null")
                latencies.append(page.evaluate("window.hwr.lastLatencyMs"))
            emit("web_demo.stroke", n=len(latencies), p50_ms=round(float(np.median(latencies)), 1),
                 p95_ms=round(float(np.percentile(latencies, 95)), 1))

            rec = Recognizer(args.model)
            files = sorted((REAL / "validation_v2" / "validation").glob("*.jpg"))[:args.crops]
            worst, same = 0.0, 0
            for f in files:
                gray = to_gray(load_image(f))
                got = page.evaluate("""async ([pixels, w, h]) => {
                    const r = await window.hwr.logitsFromGray(Uint8Array.from(pixels), w, h);
                    return {logits: Array.from(r.logits), T: r.T, C: r.C};
                }""", [gray.ravel().tolist(), gray.shape[1], gray.shape[0]])
                logits, lengths = rec.logits([rec.prepare(gray)])
                expected = logits[:, 0].numpy()
                diff = float(np.abs(np.array(got["logits"]).reshape(expected.shape) - expected).max())
                worst = max(worst, diff)
                same += int(np.array_equal(np.array(got["logits"]).reshape(expected.shape)[:got["T"]].argmax(1),
                                           expected[:got["T"]].argmax(1)))
            emit("web_demo.parity", crops=len(files), max_abs_logit_diff=float(f"{worst:.3g}"),
                 same_best_path=same)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
