"""Synthetic generation speed on one core: name sampling, rendering, JPEG encoding and writing.

    python -m bench.synth_speed [--n 3000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from bench.common import emit
from ocr.data.names import build_pools
from ocr.data.synth import generate, make_sample


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pools = build_pools()
    make_sample(0, 0, pools)  # warm the glyph caches
    t = time.perf_counter()
    for i in range(args.n):
        make_sample(0, i, pools)
    render_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate(tmp, args.n, seed=1, workers=1)
        write_s = time.perf_counter() - t
    emit("synth_speed", images=args.n, cores=1, images_per_s_in_memory=round(args.n / render_s),
         images_per_s_to_disk=round(args.n / write_s))


if __name__ == "__main__":
    main()
