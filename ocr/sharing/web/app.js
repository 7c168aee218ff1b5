// The page: a canvas to write on, the model (model.onnx) run by ONNX Runtime Web after every stroke, the reading with
// its confidence and the top candidates. Preprocessing and decoding are hwr.js (the project's, in JavaScript).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const pad = $("pad"), ctx = pad.getContext("2d", { willReadFrequently: true });
  const strokes = [];
  let current = null;
  const hwr = (window.hwr = { ready: false, loadMs: null, lastLatencyMs: null, reading: null, error: null });

  function paint() {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = "#1a1a1a";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const s of strokes) {
      ctx.lineWidth = s.width;
      ctx.beginPath();
      ctx.moveTo(s.points[0][0], s.points[0][1]);
      for (const [x, y] of s.points.slice(1)) ctx.lineTo(x, y);
      if (s.points.length === 1) ctx.lineTo(s.points[0][0] + 0.01, s.points[0][1]);
      ctx.stroke();
    }
  }

  function point(e) {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
  }

  pad.addEventListener("pointerdown", (e) => {
    pad.setPointerCapture(e.pointerId);
    current = { width: Number($("pen").value), points: [point(e)] };
    strokes.push(current);
    paint();
  });
  pad.addEventListener("pointermove", (e) => {
    if (!current) return;
    current.points.push(point(e));
    paint();
  });
  const end = () => {
    if (!current) return;
    current = null;
    read();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  $("undo").onclick = () => { strokes.pop(); paint(); read(); };
  $("clear").onclick = () => { strokes.length = 0; paint(); read(); };
  paint();

  let session = null, config = null, stride = 1;

  async function logitsFromGray(gray, w, h) {
    const x = hwrCore.preprocess(gray, w, h, config.preprocess);
    const input = new ort.Tensor("float32", x.data, [1, 1, x.height, x.paddedWidth]);
    const out = (await session.run({ images: input })).logits; // (T, 1, C)
    const [Tpad, , C] = out.dims;
    const T = Math.min(Tpad, Math.max(1, Math.floor(x.width / stride)));
    return { logits: out.data, T, Tpad, C, preprocessed: x };
  }

  function showSeen(x) {
    const seen = $("seen");
    seen.width = x.width;
    seen.height = x.height;
    const img = seen.getContext("2d").createImageData(x.width, x.height);
    for (let y = 0; y < x.height; y++) {
      for (let i = 0; i < x.width; i++) {
        const v = Math.round(255 * (1 - x.data[y * x.paddedWidth + i]));
        const j = 4 * (y * x.width + i);
        img.data[j] = img.data[j + 1] = img.data[j + 2] = v;
        img.data[j + 3] = 255;
      }
    }
    seen.getContext("2d").putImageData(img, 0, 0);
  }

  function isBlank(gray) {
    let lo = 255, hi = 0;
    for (const v of gray) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return hi - lo < 8;
  }

  let pending = Promise.resolve();
  function read() {
    pending = pending.then(async () => {
      if (!session) return;
      const t0 = performance.now();
      const rgba = ctx.getImageData(0, 0, pad.width, pad.height).data;
      const gray = hwrCore.rgbaToGray(rgba, pad.width, pad.height);
      if (isBlank(gray)) {
        hwr.reading = null;
        $("reading").textContent = "";
        $("confidence").textContent = "Draw a word above: the prediction appears here.";
        $("candidates").tBodies[0].innerHTML = "";
        return;
      }
      const { logits, T, C, preprocessed } = await logitsFromGray(gray, pad.width, pad.height);
      const reading = hwrCore.decode(logits.subarray(0, T * C), T, C, config.alphabet, 10);
      hwr.lastLatencyMs = performance.now() - t0;
      hwr.reading = reading;
      $("reading").textContent = reading.text || "(nothing)";
      $("confidence").textContent = `confidence ${reading.confidence.toFixed(2)} · ${hwr.lastLatencyMs.toFixed(0)} ms`;
      const body = $("candidates").tBodies[0];
      body.innerHTML = "";
      for (const [text, p] of reading.candidates) {
        const tr = body.insertRow();
        tr.insertCell().textContent = text || "(nothing)";
        tr.insertCell().textContent = p.toFixed(4);
      }
      showSeen(preprocessed);
    }).catch((err) => { hwr.error = String(err); $("status").textContent = `error: ${err}`; });
    return pending;
  }

  (async () => {
    const t0 = performance.now();
    try {
      config = await (await fetch("config.json")).json();
      const mc = config.model_config;
      stride = mc.stem_stride * mc.blocks.reduce((s, b) => s * b[2], 1);
      ort.env.wasm.wasmPaths = new URL("./", location.href).href; // the runtime files beside this page, no CDN
      ort.env.wasm.numThreads = 1; // a static host is not cross-origin isolated: one thread
      session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
      hwr.loadMs = performance.now() - t0;
      const m = config.metrics || {};
      $("status").textContent = `model ready (${hwr.loadMs.toFixed(0)} ms)`;
      $("about").textContent = `Character set: ${config.alphabet} · input height ${config.preprocess.height} px` +
        (m.val_cer !== undefined ? ` · its validation CER ${Number(m.val_cer).toFixed(3)}` : "");
      // RGBA pixels from anywhere (another canvas) -> the reading this page would show for them
      const readRgba = async (rgba, w, h) => {
        const { logits, T, C } = await logitsFromGray(hwrCore.rgbaToGray(rgba, w, h), w, h);
        return hwrCore.decode(logits.subarray(0, T * C), T, C, config.alphabet, 10);
      };
      Object.assign(hwr, { ready: true, config, logitsFromGray, readRgba, read, decode: hwrCore.decode });
      read();
    } catch (err) {
      hwr.error = String(err);
      $("status").textContent = `the model did not load: ${err}`;
    }
  })();
})();
