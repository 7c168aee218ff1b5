"""Contact sheets to judge crops by eye.

    python -m bench.contact_sheet [--rows 16]
        docs/synthetic_vs_real.png: real Kaggle crops (left) beside synthetic ones (right).
    python -m bench.contact_sheet --review [--issues DIR/label_issues.json ...] [--out data/bench/review]
        the sheets ``bench/data/reviewed_labels.csv`` was reviewed from: every real crop whose label the shipped
        starter reads otherwise (greedy or beam 20 + names LM) or an out-of-fold finder doubts (``--issues``: the
        ``label_issues.json`` of ``ocr find-label-errors`` or ``bench.label_errors``), 14 to a sheet, each with its
        label and readings; ``--all-from N`` adds every row from CSV row N on, ``--scale 2`` doubles the crops.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bench.common import CACHE, REAL, ROOT
from ocr.data.datasets import Sample, import_kaggle
from ocr.data.names import build_pools
from ocr.data.synth import make_sample
from ocr.decoding.decoder import DecoderConfig
from ocr.evaluation.report import FONT_DIR

PER_SHEET = 14


def font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")), size)


def synthetic_vs_real(rows: int, seed: int) -> None:
    real = sorted((REAL / "validation_v2" / "validation").glob("*.jpg"))[100:100 + rows]
    pools = build_pools()
    synth = [Image.open(io.BytesIO(make_sample(seed, i, pools)[1])) for i in range(rows)]
    cell_w, cell_h, head = 400, 76, 28
    sheet = Image.new("RGB", (2 * cell_w + 10, head + rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 4), "real (Kaggle validation crops)", fill="black", font=font(16))
    draw.text((cell_w + 18, 4), "synthetic (python -m ocr synth)", fill="black", font=font(16))
    draw.line([(cell_w + 4, 0), (cell_w + 4, sheet.height)], fill=(180, 0, 0), width=2)
    for i, (r, s) in enumerate(zip(real, synth)):
        y = head + i * cell_h
        sheet.paste(Image.open(r).convert("RGB"), (4, y))
        sheet.paste(s.convert("RGB"), (cell_w + 10, y))
    out = ROOT / "docs" / "synthetic_vs_real.png"
    out.parent.mkdir(exist_ok=True)
    sheet.save(out, optimize=True)
    print(out)


def readings(samples: list[Sample]) -> dict[str, list[tuple[str, str, float]]]:
    """The starter's names-LM and greedy readings of every sample, by file name: (reader, text, confidence)."""
    from ocr.recognize import Recognizer
    from ocr.sharing import STARTER

    rec = Recognizer(STARTER)
    out: dict[str, list] = {s.path.name: [] for s in samples}
    for name, cfg in (("lm", DecoderConfig(lm="names")), ("greedy", DecoderConfig())):
        for s, p in zip(samples, rec.read([s.path for s in samples], rec.decoder(cfg))):
            out[s.path.name].append((name, p.text, p.confidence))
    return out


def doubted(samples: list[Sample], seen: dict[str, list], issues: list[Path], all_from: int) -> list[Sample]:
    """The samples a model reads otherwise than their label, the ones ``issues`` doubt, and every row from
    ``all_from`` on; ``seen`` gains the out-of-fold readings."""
    labels = {s.path.name: s.label for s in samples}
    keep = {n for n in labels if int(Path(n).stem.rsplit("_", 1)[-1]) >= all_from}
    keep |= {n for n, texts in seen.items() if any(text != labels[n] for _, text, _ in texts)}
    for path in issues:
        for x in json.loads(path.read_text(encoding="utf-8"))["issues"]:
            name = Path(x["path"]).name
            if x["score"] > 0 and name in seen:
                keep.add(name)
                seen[name].append(("out of fold", x["reading"], x["confidence"]))
    return [s for s in samples if s.path.name in keep]


def review_sheets(samples: list[Sample], seen: dict[str, list], out: Path, scale: int) -> None:
    """Sheets of ``PER_SHEET`` crops (``scale`` times their size), each beside its label and first three readings."""
    out.mkdir(parents=True, exist_ok=True)
    cell, text_x = 84 * scale, 400 * scale
    for start in range(0, len(samples), PER_SHEET):
        part = samples[start:start + PER_SHEET]
        sheet = Image.new("RGB", (text_x + 500, len(part) * cell), "white")
        draw = ImageDraw.Draw(sheet)
        for i, s in enumerate(part):
            y = i * cell
            crop = Image.open(s.path).convert("RGB")
            sheet.paste(crop.resize((crop.width * scale, crop.height * scale), Image.LANCZOS), (4, y + 4))
            draw.text((text_x, y + 4), f"{s.path.stem}  label: {s.label}", fill="black", font=font(17))
            for j, (reader, text, confidence) in enumerate(seen[s.path.name][:3]):
                draw.text((text_x, y + 28 + 18 * j), f"{reader}: {text} ({confidence:.3f})",
                          fill=(0, 0, 160) if j == 0 else (90, 90, 90), font=font(14, bold=False))
            draw.line([(0, y + cell - 2), (sheet.width, y + cell - 2)], fill=(200, 200, 200))
        sheet.save(out / f"review-{start // PER_SHEET:03d}.png")
    print(f"{len(samples)} crops on {-(-len(samples) // PER_SHEET)} sheets in {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--review", action="store_true", help="the review sheets of the doubted real labels")
    ap.add_argument("--issues", nargs="*", type=Path, default=[], help="label_issues.json files of finder runs")
    ap.add_argument("--all-from", type=int, default=10**9, help="also every row from this CSV row on")
    ap.add_argument("--scale", type=int, default=1, help="crops this many times their size (2 for a second look)")
    ap.add_argument("--out", type=Path, default=CACHE / "review")
    args = ap.parse_args()
    if not args.review:
        return synthetic_vs_real(args.rows, args.seed)
    samples = import_kaggle(REAL, ("validation",)).samples
    seen = readings(samples)
    review_sheets(doubted(samples, seen, args.issues, args.all_from), seen, args.out, args.scale)


if __name__ == "__main__":
    main()
