"""The static web demo in real Chromium, served by a local static server: the in-browser preprocessing and ONNX model
give PyTorch's logits on real crops, and a word drawn on the page reads as the Python reader reads the same pixels."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from dashboard.drawing import to_image
from tests.conftest import _free_port, stop_process, wait_for
from tests.test_browser import browser_context, dashboard, draw_lili  # noqa: F401 - the Chromium and dashboard fixtures


@pytest.fixture(scope="module")
def site(tmp_path_factory, trained):
    from ocr.sharing.webdemo import WebExportError, export_web

    out = tmp_path_factory.mktemp("site")
    try:
        export_web(trained, out)
    except WebExportError as exc:
        pytest.skip(f"onnxruntime-web is not available here: {exc}")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"

    def up():
        try:
            return urllib.request.urlopen(url, timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(up, 30, "the static server")
        yield {"url": url, "folder": out, "checkpoint": trained}
    finally:
        stop_process(server, grace=5)


def _open(context, url):
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.hwr && (window.hwr.ready || window.hwr.error)", timeout=60_000)
    assert page.evaluate("window.hwr.error") is None and not errors, errors
    return page


def test_the_page_gives_pytorchs_logits_on_real_crops(site, browser_context, real_data):  # noqa: F811
    from ocr.preprocess import load_image, to_gray
    from ocr.recognize import Recognizer

    page = _open(browser_context, site["url"])
    rec = Recognizer(site["checkpoint"])
    files = sorted((real_data / "validation_v2" / "validation").glob("*.jpg"))[:12]
    for f in files:
        gray = to_gray(load_image(f))  # the decoded pixels: the page gets them as they are, JPEG decoding aside
        got = page.evaluate("""async ([pixels, w, h]) => {
            const r = await window.hwr.logitsFromGray(Uint8Array.from(pixels), w, h);
            return {logits: Array.from(r.logits), T: r.T, Tpad: r.Tpad, C: r.C};
        }""", [gray.ravel().tolist(), gray.shape[1], gray.shape[0]])
        logits, lengths = rec.logits([rec.prepare(Image.fromarray(gray))])
        expected = logits[:, 0].numpy()
        assert (got["Tpad"], got["C"]) == expected.shape and got["T"] == int(lengths[0])
        np.testing.assert_allclose(np.array(got["logits"]).reshape(expected.shape), expected, atol=1e-3, rtol=0)


def test_a_word_drawn_on_the_page_reads_as_python_reads_its_pixels(site, browser_context):  # noqa: F811
    from ocr.decoding.decoder import DecoderConfig
    from ocr.recognize import Recognizer

    page = _open(browser_context, site["url"])
    draw_lili(page, page.locator("#pad").bounding_box())  # as the Draw page test writes
    page.wait_for_function("window.hwr.reading !== null && window.hwr.lastLatencyMs !== null")
    page.wait_for_timeout(300)  # the last stroke's reading
    reading = page.evaluate("window.hwr.reading")
    rgba = page.evaluate("""() => { const c = document.getElementById('pad');
        return {w: c.width, h: c.height, data: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)};
    }""")
    # what the Draw page does with its canvas's pixels (dashboard/app_pages/draw.py), the names LM switched off
    image = to_image(np.array(rgba["data"], dtype=np.uint8).reshape(rgba["h"], rgba["w"], 4))
    rec = Recognizer(site["checkpoint"])
    expected = rec.read_prepared([rec.prepare(image)], rec.decoder(DecoderConfig(beam=10)))[0]
    assert reading["text"] == expected.text
    assert abs(reading["confidence"] - expected.confidence) < 1e-3
    assert [t for t, _ in reading["candidates"]] == [t for t, _ in expected.candidates]
    shown = page.locator("#reading").inner_text()
    assert shown == (expected.text or "(nothing)")
    assert page.evaluate("window.hwr.lastLatencyMs") < 2000
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("window.hwr.reading === null")


def test_the_demo_folder_holds_what_a_static_host_needs(site):
    files = {p.name for p in site["folder"].iterdir()}
    assert {"index.html", "app.js", "hwr.js", "model.onnx", "config.json", "ort.wasm.min.js",
            "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs", ".nojekyll"} <= files
    html = (site["folder"] / "index.html").read_text()
    assert "http" not in html  # nothing fetched from elsewhere: no CDN


def test_hwr_js_resizes_like_pillow_and_decodes_like_python(tmp_path):
    """hwr.js against Pillow and ocr.decoding.ctc directly (Node.js, no browser): random sizes up and down, tiny images,
    both pass orders of Pillow 13's resize, a canvas's RGBA with any transparency to gray as the Draw page makes it,
    and random logits through greedy and beam search."""
    import json
    import shutil

    from ocr.alphabet import Alphabet
    from ocr.decoding.ctc import beam_decode, greedy_decode
    from ocr.preprocess import PreprocessConfig, pad_batch, preprocess, to_gray
    from ocr.sharing.webdemo import PAGE_DIR

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    rng = np.random.default_rng(0)
    resize, pre = [], []
    for _ in range(150):
        h, w = int(rng.integers(1, 200)), int(rng.integers(1, 500))
        oh, ow = int(rng.integers(1, 64)), int(rng.integers(1, 300))
        gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
        resize.append([w, h, ow, oh, gray.ravel().tolist(),
                       np.asarray(Image.fromarray(gray).resize((ow, oh), Image.BILINEAR)).ravel().tolist()])
    for shape in [(7, 3), (200, 30), (20, 3000), (32, 64), (120, 720), (40, 300)]:
        gray = rng.integers(0, 256, shape, dtype=np.uint8)
        gray[:, : shape[1] // 2] //= 4  # some ink
        batch, _ = pad_batch([preprocess(gray, PreprocessConfig())])
        pre.append([shape[1], shape[0], gray.ravel().tolist(), batch.numpy().ravel().tolist()])
    rgba = rng.integers(0, 256, (40, 70, 4), dtype=np.uint8)  # the Draw page's canvas path, any transparency
    rgba[::3, :, 3], rgba[1::5, :, 3] = 0, 255
    canvas = [70, 40, rgba.ravel().tolist(), to_gray(to_image(rgba)).ravel().tolist()]
    alphabet, decode = Alphabet(), []
    for i in range(30):
        g = torch.Generator().manual_seed(i)
        T = int(torch.randint(3, 40, (1,), generator=g))
        logits = torch.randn(T, 1, alphabet.num_classes, generator=g) * (1 + 5 * torch.rand(1, generator=g))
        b = beam_decode(logits, torch.tensor([T]), alphabet, beam=10, top_k=5)[0]
        gr = greedy_decode(logits, torch.tensor([T]), alphabet)[0]
        decode.append([T, logits[:, 0].flatten().tolist(), b.text, b.confidence, [t for t, _ in b.candidates],
                       gr.text, gr.confidence])
    (tmp_path / "cases.json").write_text(json.dumps({"resize": resize, "pre": pre, "decode": decode,
                                                     "canvas": canvas, "alphabet": alphabet.chars}))
    script = tmp_path / "check.js"
    script.write_text(f"""
require({json.dumps(str(PAGE_DIR / "hwr.js"))});
const d = require({json.dumps(str(tmp_path / "cases.json"))});
const out = {{resize: 0, pre: 0, maxPreDiff: 0, text: 0, confidence: 0, gray: 0}};
const [cw, ch, rgba, gray] = d.canvas;
out.gray = Array.from(hwrCore.rgbaToGray(Uint8Array.from(rgba), cw, ch)).filter((v, i) => v !== gray[i]).length;
for (const [w, h, ow, oh, g, r] of d.resize) {{
  const got = hwrCore.resizeGray(Uint8Array.from(g), w, h, ow, oh);
  if (got.length !== r.length || got.some((v, i) => v !== r[i])) out.resize++;
}}
for (const [w, h, g, e] of d.pre) {{
  const x = hwrCore.preprocess(Uint8Array.from(g), w, h, {{height: 32, max_width: 256}});
  if (x.data.length !== e.length) {{ out.pre++; continue; }}
  for (let i = 0; i < e.length; i++) out.maxPreDiff = Math.max(out.maxPreDiff, Math.abs(x.data[i] - e[i]));
}}
const C = d.alphabet.length + 1;
for (const [T, l, text, conf, cands, gtext, gconf] of d.decode) {{
  const b = hwrCore.decode(Float32Array.from(l), T, C, d.alphabet, 10);
  const g = hwrCore.decode(Float32Array.from(l), T, C, d.alphabet, 0);
  if (b.text !== text || g.text !== gtext || JSON.stringify(b.candidates.map((c) => c[0])) !== JSON.stringify(cands))
    out.text++;
  out.confidence = Math.max(out.confidence, Math.abs(b.confidence - conf), Math.abs(g.confidence - gconf));
}}
console.log(JSON.stringify(out));
""")
    result = json.loads(subprocess.run([node, str(script)], capture_output=True, text=True, timeout=120,
                                       check=True).stdout)
    assert result == {**result, "resize": 0, "pre": 0, "maxPreDiff": 0, "text": 0, "gray": 0}
    assert result["confidence"] < 1e-5


def test_the_same_strokes_read_the_same_on_the_draw_page_and_on_the_web_page(dashboard, site,  # noqa: F811
                                                                             browser_context):  # noqa: F811
    """The Draw page's canvas pixels, drawn there with the mouse, read by the web page give the Draw page's text (its
    names LM switched off: the web page has none). Both serve the same model."""
    from tests.test_browser import _idle

    page = browser_context.new_page()
    page.goto(f"{dashboard['url']}/draw")
    _idle(page)
    page.get_by_text("Names LM").click()
    _idle(page)
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for()
    draw_lili(page, canvas.bounding_box())
    page.get_by_text("What the model sees").wait_for(timeout=60_000)
    _idle(page)
    canvases = page.locator("canvas.lower-canvas")  # the component's background canvas, then the drawing's
    pixels = [canvases.nth(i).evaluate("""(c) => ({w: c.width, h: c.height,
        data: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)})""")
              for i in range(canvases.count())]
    pixels = next(p for p in pixels if max(p["data"][3::4]) > 0)
    web = _open(browser_context, site["url"])
    reading = web.evaluate("async ([d, w, h]) => await window.hwr.readRgba(Uint8Array.from(d), w, h)",
                           [pixels["data"], pixels["w"], pixels["h"]])
    assert (pixels["w"], pixels["h"]) == (720, 120)
    web_text = reading["text"] or "(nothing)"
    drawn = page.locator('[data-testid="stMetricValue"]').first
    # each stroke is read in a rerun of its own, and the last one's can start after the page looked idle: wait for it
    try:
        wait_for(lambda: drawn.inner_text().strip() == web_text, 30, "the Draw page's reading of the last stroke")
    except AssertionError:
        assert drawn.inner_text().strip() == web_text
