// The project's preprocessing and CTC decoding, once, in JavaScript: the same numbers as ocr/preprocess.py (Pillow's
// bilinear resize in its 8-bit fixed point, the ink map in float32 steps of 1/255, zero padding to a multiple of 8)
// and ocr/decoding/ctc.py (greedy and prefix beam search, confidence = P(text | image)). Pure functions, no DOM: the page
// (app.js) and the parity test call them.
(function (global) {
  "use strict";

  const PRECISION_BITS = 32 - 8 - 2;
  const ONE = 1 << PRECISION_BITS;
  const f32 = Math.fround;

  function bilinear(x) {
    if (x < 0) x = -x;
    return x < 1 ? 1 - x : 0;
  }

  // Pillow's precompute_coeffs + normalize_coeffs_8bpc (src/libImaging/Resample.c) for the bilinear filter.
  function coeffs(inSize, outSize) {
    const scale = inSize / outSize;
    const filterscale = Math.max(scale, 1);
    const support = 1 * filterscale;
    const ksize = Math.ceil(support) * 2 + 1;
    const kk = new Int32Array(outSize * ksize);
    const bounds = new Int32Array(outSize * 2);
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const ss = 1 / filterscale;
      let xmin = Math.trunc(center - support + 0.5);
      if (xmin < 0) xmin = 0;
      let xmax = Math.trunc(center + support + 0.5);
      if (xmax > inSize) xmax = inSize;
      xmax -= xmin;
      const w = new Float64Array(xmax);
      let ww = 0;
      for (let x = 0; x < xmax; x++) {
        w[x] = bilinear((x + xmin - center + 0.5) * ss);
        ww += w[x];
      }
      for (let x = 0; x < xmax; x++) {
        const k = ww !== 0 ? w[x] / ww : w[x];
        kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
      }
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    return { ksize, kk, bounds };
  }

  function clip8(ss) {
    const v = Math.floor(ss / ONE);
    return v < 0 ? 0 : v > 255 ? 255 : v;
  }

  function horizontalPass(src, srcW, rows, rowOffset, outW, hor) {
    const out = new Uint8Array(outW * rows);
    for (let yy = 0; yy < rows; yy++) {
      const row = (yy + rowOffset) * srcW;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = hor.bounds[xx * 2], xmax = hor.bounds[xx * 2 + 1], k = xx * hor.ksize;
        let ss = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < xmax; x++) ss += src[row + x + xmin] * hor.kk[k + x];
        out[yy * outW + xx] = clip8(ss);
      }
    }
    return out;
  }

  function verticalPass(src, srcW, outH, rowShift, vert) {
    const out = new Uint8Array(srcW * outH);
    for (let yy = 0; yy < outH; yy++) {
      const ymin = vert.bounds[yy * 2] - rowShift, ymax = vert.bounds[yy * 2 + 1], k = yy * vert.ksize;
      for (let xx = 0; xx < srcW; xx++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let y = 0; y < ymax; y++) ss += src[(y + ymin) * srcW + xx] * vert.kk[k + y];
        out[yy * srcW + xx] = clip8(ss);
      }
    }
    return out;
  }

  // Image.resize((outW, outH), Image.BILINEAR) of an 8-bit gray image as Pillow 13 does it (ImagingResampleInner):
  // two passes, each rounded to 8 bits; horizontal first (over the rows the vertical pass uses) unless the height
  // shrinks by more than twice what the width does.
  function resizeGray(gray, w, h, outW, outH) {
    const needH = outW !== w, needV = outH !== h;
    if (!needH && !needV) return Uint8Array.from(gray);
    const horizontalFirst = !((h - outH) > 0 && (h - outH) > (w - outW) * 2);
    const vert = coeffs(h, outH), hor = needH ? coeffs(w, outW) : null;
    if (horizontalFirst) {
      let src = gray, srcW = w, shift = 0;
      if (needH) {
        const yFirst = vert.bounds[0], yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
        src = horizontalPass(gray, w, yLast - yFirst, yFirst, outW, hor);
        srcW = outW;
        shift = yFirst;
      }
      return needV ? verticalPass(src, srcW, outH, shift, vert) : src;
    }
    const tall = needV ? verticalPass(gray, w, outH, 0, vert) : gray;
    return needH ? horizontalPass(tall, w, outH, 0, outW, hor) : tall;
  }

  function roundHalfEven(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // ocr.preprocess.normalize: paper at the median gray, ink at the darkest 0.5 %, float32 steps of 1/255.
  function inkMap(gray) {
    const hist = new Float64Array(256);
    for (let i = 0; i < gray.length; i++) hist[gray[i]]++;
    const cdf = new Float64Array(256);
    let acc = 0;
    for (let v = 0; v < 256; v++) cdf[v] = acc += hist[v];
    const searchsorted = (target) => { let v = 0; while (v < 255 && cdf[v] < target) v++; return v; };
    const paper = searchsorted(acc * 0.5), ink = searchsorted(acc * 0.005);
    const scale = Math.max(paper - ink, 32);
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      let d = f32(f32(paper - v) / scale);
      d = d < 0 ? 0 : d > 1 ? 1 : d;
      lut[v] = f32(roundHalfEven(f32(d * 255)) / 255);
    }
    const out = new Float32Array(gray.length);
    for (let i = 0; i < gray.length; i++) out[i] = lut[gray[i]];
    return out;
  }

  // ocr.preprocess.preprocess + pad_batch for one image: (height, W) gray -> {data: float32 (1, 1, H, Wpad), width}.
  function preprocess(gray, w, h, config) {
    if (!w || !h) throw new Error("empty image");
    const H = config.height;
    const outW = Math.max(4, Math.min(config.max_width, roundHalfEven(w * H / h)));
    const ink = inkMap(resizeGray(gray, w, h, outW, H));
    const padded = Math.ceil(outW / 8) * 8;
    const data = new Float32Array(H * padded);
    for (let y = 0; y < H; y++) data.set(ink.subarray(y * outW, (y + 1) * outW), y * padded);
    return { data, width: outW, paddedWidth: padded, height: H };
  }

  // RGBA pixels (a canvas) -> 8-bit gray as dashboard/drawing.py's to_image + Pillow's convert("L") make it: composited
  // on white paper with Pillow's integer alpha_composite (AlphaComposite.c), then ITU-R 601-2 luma in fixed point.
  const div255 = (a) => (((a >>> 8) + a) >>> 8);
  function rgbaToGray(rgba, w, h) {
    const out = new Uint8Array(w * h);
    for (let i = 0, j = 0; i < out.length; i++, j += 4) {
      const a = rgba[j + 3];
      let r = 255, g = 255, b = 255;
      if (a !== 0) {
        const outa255 = a * 255 + 255 * (255 - a);
        const coef1 = Math.floor((a * 255 * 255 * 128) / outa255);
        const coef2 = 255 * 128 - coef1;
        r = div255(rgba[j] * coef1 + 255 * coef2 + (0x80 << 7)) >>> 7;
        g = div255(rgba[j + 1] * coef1 + 255 * coef2 + (0x80 << 7)) >>> 7;
        b = div255(rgba[j + 2] * coef1 + 255 * coef2 + (0x80 << 7)) >>> 7;
      }
      out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
    }
    return out;
  }

  function logSoftmaxRows(logits, T, C) {
    const out = new Float64Array(T * C);
    for (let t = 0; t < T; t++) {
      let m = -Infinity;
      for (let c = 0; c < C; c++) m = Math.max(m, logits[t * C + c]);
      let s = 0;
      for (let c = 0; c < C; c++) s += Math.exp(logits[t * C + c] - m);
      const lse = m + Math.log(s);
      for (let c = 0; c < C; c++) out[t * C + c] = logits[t * C + c] - lse;
    }
    return out;
  }

  function logAddExp(a, b) {
    if (a === -Infinity) return b;
    if (b === -Infinity) return a;
    const m = Math.max(a, b);
    return m + Math.log1p(Math.exp(-Math.abs(a - b)));
  }

  // ocr.decoding.ctc.greedy_decode for one sequence: best class per step, repeats and blanks removed.
  function greedy(logp, T, C, alphabet) {
    let text = "", lp = 0, prev = -1;
    for (let t = 0; t < T; t++) {
      let best = 0;
      for (let c = 1; c < C; c++) if (logp[t * C + c] > logp[t * C + best]) best = c;
      lp += logp[t * C + best];
      if (best !== prev && best !== 0) text += alphabet[best - 1];
      prev = best;
    }
    return { text, confidence: Math.exp(lp), candidates: [] };
  }

  // ocr.decoding.ctc.beam_decode_one without a language model: CTC prefix beam search, P(text | image) summed over paths.
  function beam(logp, T, C, alphabet, width = 10, topK = 5, prune = -12, maxClasses = 20) {
    let beams = new Map([["", { prefix: [], pb: 0, pnb: -Infinity }]]);
    for (let t = 0; t < T; t++) {
      const row = logp.subarray(t * C, (t + 1) * C);
      let classes = [];
      for (let c = 0; c < C; c++) if (row[c] > prune) classes.push(c);
      if (classes.length > maxClasses) classes = classes.sort((a, b) => row[b] - row[a]).slice(0, maxClasses);
      const next = new Map();
      const entry = (prefix) => {
        const key = prefix.join(",");
        let e = next.get(key);
        if (!e) next.set(key, e = { prefix, pb: -Infinity, pnb: -Infinity });
        return e;
      };
      for (const { prefix, pb, pnb } of beams.values()) {
        const total = logAddExp(pb, pnb);
        for (const c of classes) {
          const p = row[c];
          if (c === 0) {
            const e = entry(prefix);
            e.pb = logAddExp(e.pb, total + p);
            continue;
          }
          const last = prefix.length ? prefix[prefix.length - 1] : null;
          const e = entry(prefix.concat([c]));
          if (c === last) {
            e.pnb = logAddExp(e.pnb, pb + p);
            const s = entry(prefix);
            s.pnb = logAddExp(s.pnb, pnb + p);
          } else {
            e.pnb = logAddExp(e.pnb, total + p);
          }
        }
      }
      const scored = [...next.values()].sort((a, b) => logAddExp(b.pb, b.pnb) - logAddExp(a.pb, a.pnb)).slice(0, width);
      beams = new Map(scored.map((e) => [e.prefix.join(","), e]));
    }
    const ranked = [...beams.values()].sort((a, b) => logAddExp(b.pb, b.pnb) - logAddExp(a.pb, a.pnb))
      .map((e) => [e.prefix.map((i) => alphabet[i - 1]).join(""), Math.exp(logAddExp(e.pb, e.pnb))]);
    return { text: ranked[0][0], confidence: ranked[0][1], candidates: ranked.slice(0, topK) };
  }

  // logits (T, 1, C) for one image -> the reading; T is the image's own output length (width // stride).
  function decode(logits, T, C, alphabet, beamWidth = 10) {
    const logp = logSoftmaxRows(logits, T, C);
    return beamWidth > 0 ? beam(logp, T, C, alphabet, beamWidth) : greedy(logp, T, C, alphabet);
  }

  global.hwrCore = { resizeGray, inkMap, preprocess, rgbaToGray, decode, greedy, beam, logSoftmaxRows };
})(typeof window !== "undefined" ? window : globalThis);
