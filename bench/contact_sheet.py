"""docs/synthetic_vs_real.png: real Kaggle crops (left) beside synthetic ones (right), to judge by eye.

    python -m bench.contact_sheet [--rows 16]
"""

from __future__ import annotations

import argparse
import io

from PIL import Image, ImageDraw, ImageFont

from bench.common import REAL, ROOT
from ocr.data.names import build_pools
from ocr.data.synth import make_sample
from ocr.evaluation.report import FONT_DIR


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    real = sorted((REAL / "validation_v2" / "validation").glob("*.jpg"))[100:100 + args.rows]
    pools = build_pools()
    synth = [Image.open(io.BytesIO(make_sample(args.seed, i, pools)[1])) for i in range(args.rows)]
    cell_w, cell_h, head = 400, 76, 28
    sheet = Image.new("RGB", (2 * cell_w + 10, head + args.rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.truetype(str(FONT_DIR / "DejaVuSans-Bold.ttf"), 16)
    draw.text((8, 4), "real (Kaggle validation crops)", fill="black", font=font)
    draw.text((cell_w + 18, 4), "synthetic (python -m ocr synth)", fill="black", font=font)
    draw.line([(cell_w + 4, 0), (cell_w + 4, sheet.height)], fill=(180, 0, 0), width=2)
    for i, (r, s) in enumerate(zip(real, synth)):
        y = head + i * cell_h
        sheet.paste(Image.open(r).convert("RGB"), (4, y))
        sheet.paste(s.convert("RGB"), (cell_w + 10, y))
    out = ROOT / "docs" / "synthetic_vs_real.png"
    out.parent.mkdir(exist_ok=True)
    sheet.save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    main()
