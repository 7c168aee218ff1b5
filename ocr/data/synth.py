"""Synthetic handwritten form fields that look like the Kaggle form crops: the embedded default data.

Kinds (``KINDS``): ``names`` (the Kaggle forms': upper-case names, accents drawn but not in the label), ``capitals``
(the same names with their accented capitals kept in the label: ``HÉLÈNE``), ``dates`` (numeric, in the usual
written formats), ``numbers`` (postcodes, phone numbers, amounts, plain numbers), ``words`` (common French words
from wordfreq's list and names, lower case or capitalised, their accents kept in the label) and ``mixed`` (capitals,
dates, numbers and words, plus dates with the month written out: a set with accents keeps them, so ``mixed`` has no
accent-stripped names). Each kind has its own form captions; the pen, paper and scan are the same.

Each image is a name drawn with Hershey stroke fonts as a pen would: per-glyph jitter, slant,
rotation and scale, spaced block capitals or joined letters, baseline drift, stroke width,
accents writers add but labels leave out, on a form crop with printed captions (``NOM :``),
the cut-off edge of neighbouring fields, box lines, gray paper, blur, noise and JPEG artefacts.
Image ``i`` of seed ``s`` depends only on ``(s, i)``, so any worker count gives the same files.
"""

from __future__ import annotations

import csv
import io
import math
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ocr.alphabet import LabelRules, normalize_label
from ocr.data.datasets import write_rules
from ocr.data.names import NamePool, build_pools, to_label

SYNTH_VERSION = 2  # bump when the rendering changes: cached datasets are named after it
WIDTHS = (284, 324, 388)
WIDTH_P = (0.39, 0.26, 0.35)  # as in the real validation crops
BLOCK_FONTS = ("futural", "rowmans", "futuram", "rowmand")
CURSIVE_FONTS = ("scripts", "cursive")
CAPTIONS = ("NOM :", "PRENOM :", "NOM :", "PRENOM :", "PRENOM", "NOM")
NEIGHBOURS = ("DATE DE NAISSANCE", "CLASSE", "CODE RNE / UAI :", "NOM :", "PRENOM :", "DATE DE NAISSANCE   CLASSE")
ACCENTS = {"É": "acute", "È": "grave", "Ê": "circ", "Ë": "diaer", "Ï": "diaer", "Î": "circ", "Ô": "circ",
           "À": "grave", "Â": "circ", "Ç": "cedilla", "Ü": "diaer", "Û": "circ", "Ù": "grave"}


@dataclass(frozen=True)
class Glyph:
    strokes: tuple[np.ndarray, ...]  # each (K, 2), x right, y down, cap height 1, baseline at y=0
    advance: float


@cache
def glyph(font: str, char: str) -> Glyph:
    """One character of a Hershey font, normalised to cap height 1 (cached per process)."""
    hf = _font(font)
    strokes = [np.array(s, dtype=np.float32) for s in hf.strokes_for_text(char) if len(s) > 1]
    ref = np.concatenate([np.array(s, dtype=np.float32) for s in hf.strokes_for_text("H")])
    base, cap = ref[:, 1].min(), ref[:, 1].max()
    scale = 1.0 / (cap - base)
    if not strokes:  # space
        return Glyph((), 0.55)
    pts = np.concatenate(strokes)
    x0, x1 = pts[:, 0].min(), pts[:, 0].max()
    out = []
    for s in strokes:
        s = s.copy()
        s[:, 0] = (s[:, 0] - x0) * scale
        s[:, 1] = -(s[:, 1] - base) * scale  # y up -> y down, baseline 0, cap at -1
        out.append(s)
    return Glyph(tuple(out), float((x1 - x0) * scale) + 0.22)  # + side bearing: I and 1 have zero ink width


@cache
def _font(name: str):
    from HersheyFonts import HersheyFonts

    hf = HersheyFonts()
    hf.load_default_font(name)
    hf.normalize_rendering(100)
    return hf


FONT_DIR = Path(__file__).parents[1] / "fonts"  # DejaVu Sans, shipped with the project (its license beside it)


@lru_cache(maxsize=64)
def _ttf(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(FONT_DIR / name), size)


def _accent_strokes(kind: str, x: float, w: float, top: float, h: float) -> list[np.ndarray]:
    """Accent marks above (or cedilla below) a glyph spanning x..x+w whose top is at y=top."""
    cx, y = x + w / 2, top - 0.18 * h
    a = 0.22 * h
    if kind == "acute":
        return [np.array([[cx - a * 0.3, y], [cx + a * 0.5, y - a]])]
    if kind == "grave":
        return [np.array([[cx + a * 0.3, y], [cx - a * 0.5, y - a]])]
    if kind == "circ":
        return [np.array([[cx - a * 0.6, y], [cx, y - a * 0.8], [cx + a * 0.6, y]])]
    if kind == "diaer":
        d = 0.08 * h
        return [np.array([[cx - a * 0.5, y - d], [cx - a * 0.5 + d, y]]),
                np.array([[cx + a * 0.5, y - d], [cx + a * 0.5 + d, y]])]
    if kind == "cedilla":
        b = top + h * 1.0
        return [np.array([[cx, b], [cx + a * 0.3, b + a * 0.5], [cx - a * 0.3, b + a * 0.8]])]
    return []


def sample_name(pools: dict[str, NamePool], rng: np.random.Generator) -> str:
    """A first name or surname (original spelling), sometimes compound as on real forms."""
    kind = "first" if rng.random() < 0.5 else "last"
    name = pools[kind].sample(rng)
    r = rng.random()
    if r < 0.07:
        name = f"{name}-{pools[kind].sample(rng)}"
    elif r < 0.10:
        name = f"{name} {pools[kind].sample(rng)}"
    if len(to_label(name)) > 24:
        name = pools[kind].sample(rng)
    return name


def render(name: str, rng: np.random.Generator, label: str | None = None,
           captions: tuple[str, ...] = CAPTIONS) -> Image.Image:
    """Draw ``name`` (original spelling; the label is ``to_label(name)`` unless given) on a form crop -> gray image."""
    names = label is None  # a Kaggle name: upper-case label whatever the case it is written in
    label = to_label(name) if names else label
    width = int(rng.choice(WIDTHS, p=WIDTH_P))
    height = int(np.clip(rng.normal(36, 9), 14, 72))
    paper = int(rng.integers(236, 256)) if rng.random() < 0.15 else 255
    img = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(img)

    # printed caption at the left, as on the form
    x = float(rng.integers(2, 40))
    cap_h = height * rng.uniform(0.28, 0.5)
    baseline = height * rng.uniform(0.55, 0.78)
    layout = rng.random()
    if layout < 0.5:  # caption on the left, the name after it
        size = int(np.clip(rng.normal(11, 1.5) * min(1.0, height / 30), 7, 16))
        caption = captions[int(rng.integers(len(captions)))]
        font = _ttf(size)
        cx = int(rng.integers(0, 20))
        draw.text((cx, baseline), caption, fill=int(rng.integers(0, 60)), font=font, anchor="ls")
        x = cx + font.getlength(caption) + rng.uniform(8, 45)
    elif layout < 0.6 and height >= 36:  # caption above the name, as in the two-line crops
        size = int(rng.integers(8, 12))
        draw.text((int(rng.integers(10, 40)), int(rng.integers(0, 4))), captions[int(rng.integers(len(captions)))].rstrip(" :"),
                  fill=int(rng.integers(0, 60)), font=_ttf(size, bold=False))
        baseline = height * rng.uniform(0.8, 0.9)
        cap_h = min(cap_h, height * 0.45)

    # the cut-off edge of a neighbouring field, above or below
    if rng.random() < 0.35:
        size = int(rng.integers(9, 14))
        text = NEIGHBOURS[int(rng.integers(len(NEIGHBOURS)))]
        y = -rng.uniform(0.5, 0.9) * size if rng.random() < 0.5 else height - rng.uniform(0.15, 0.5) * size
        draw.text((int(rng.integers(0, width // 2)), y), text, fill=int(rng.integers(0, 80)), font=_ttf(size, rng.random() < 0.5))
    if rng.random() < 0.15:
        bx = int(rng.integers(0, 4)) if rng.random() < 0.5 else width - 1 - int(rng.integers(0, 4))
        draw.line([(bx, 0), (bx, height)], fill=int(rng.integers(0, 120)), width=1)
    if rng.random() < 0.1:
        by = height - 1 - int(rng.integers(0, 4))
        draw.line([(0, by), (width, by)], fill=int(rng.integers(80, 180)), width=1)

    _draw_name(draw, name, label, x, baseline, cap_h, width, rng, names)

    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    if rng.random() < 0.35:
        arr = np.asarray(img, dtype=np.int16) + rng.normal(0, rng.uniform(2, 6), (height, width)).astype(np.int16)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


def _draw_name(draw: ImageDraw.ImageDraw, name: str, label: str, x: float, baseline: float, cap_h: float,
               width: int, rng: np.random.Generator, names: bool = True) -> None:
    cursive = rng.random() < 0.12
    font = CURSIVE_FONTS[int(rng.integers(2))] if cursive else BLOCK_FONTS[int(rng.integers(len(BLOCK_FONTS)))]
    spaced = not cursive and rng.random() < 0.7
    gap = cap_h * (rng.uniform(0.3, 1.2) if spaced else rng.uniform(0.0, 0.15))
    lower_i = rng.random() < 0.35  # writers often use a dotted lower-case i inside capitals
    accent_p = rng.uniform(0.4, 1.0)
    slant = rng.normal(0.08, 0.12)
    pen = max(1, round(cap_h / rng.uniform(7, 14)))
    ink = int(rng.integers(0, 70))
    chars = [unicodedata.normalize("NFD", c)[0] for c in label]  # é is drawn as e with an accent
    if names and cursive:
        chars = [chars[0]] + [c.lower() for c in chars[1:]]
    elif names and lower_i:
        chars = ["i" if c == "I" else c for c in chars]
    accents = [ACCENTS.get(c) for c in name.upper()] if len(name) == len(label) else [None] * len(label)
    if not names:  # the label keeps its accents: every one is drawn
        accent_p = 1.0
    advances = [glyph(font, c).advance for c in chars]
    total = sum(a * cap_h * 1.12 for a in advances) + gap * 1.3 * (len(chars) - 1) + abs(slant) * cap_h * 1.2
    room = width - x - 4
    if total > room:  # squeeze to fit, as a writer would
        f = max(0.35, room / total)
        cap_h *= f
        gap *= f
        total = room
    x = min(x, max(2.0, width - 4 - total))
    drift = 0.0
    for c, adv, acc in zip(chars, advances, accents):
        g = glyph(font, c)
        h = cap_h * rng.uniform(0.88, 1.12)
        drift += rng.normal(0, cap_h * 0.04)
        theta = rng.normal(0, 0.05)
        cos, sin = math.cos(theta), math.sin(theta)
        y0 = baseline + drift
        for s in g.strokes:
            p = s * h + rng.normal(0, 0.025 * h, s.shape)
            px = p[:, 0] * cos - p[:, 1] * sin - p[:, 1] * slant + x
            py = p[:, 0] * sin + p[:, 1] * cos + y0
            draw.line(list(zip(px.tolist(), py.tolist())), fill=ink, width=pen, joint="curve")
        if acc and rng.random() < accent_p:
            for s in _accent_strokes(acc, x + h * slant, adv * h, y0 - h, h):
                draw.line([tuple(q) for q in s.tolist()], fill=ink, width=pen)
        x += adv * h + (gap if not cursive else cap_h * 0.05) * rng.uniform(0.7, 1.3)


KINDS = ("names", "capitals", "dates", "numbers", "words", "mixed")
FIELD_CAPTIONS = {
    "dates": ("DATE :", "DATE DE NAISSANCE :", "NE(E) LE :", "LE :", "DATE"),
    "numbers": ("CODE POSTAL :", "TEL :", "MONTANT :", "N° :", "CP :", "QUANTITE :"),
    "words": ("VILLE :", "COMMUNE :", "LIEU :", "PRENOM :", "NOM :"),
}
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")


def label_rules(kind: str) -> LabelRules:
    """How a synthetic dataset of ``kind`` is imported: names as the Kaggle forms' are; the other kinds' labels are
    exact as written (case and accents kept, any character)."""
    return LabelRules() if kind == "names" else LabelRules(upper=False, charset="any")


def _date(rng: np.random.Generator, written: bool) -> str:
    y, m, d = int(rng.integers(1930, 2026)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    if written:  # "3 mars 1998", "3 MARS 1998", "3 Mars 98"
        month = MONTHS[m - 1]
        month = (month.upper(), month.capitalize(), month)[int(rng.integers(3))]
        return f"{d} {month} {y if rng.random() < 0.8 else y % 100:02d}"
    fmt = ("{d:02d}/{m:02d}/{y}", "{d:02d}/{m:02d}/{yy:02d}", "{d}/{m}/{y}", "{d:02d}.{m:02d}.{y}",
           "{d:02d}-{m:02d}-{y}", "{y}-{m:02d}-{d:02d}")[int(rng.choice(6, p=(0.4, 0.15, 0.1, 0.15, 0.1, 0.1)))]
    return fmt.format(d=d, m=m, y=y, yy=y % 100)


def _number(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.3:  # a French postcode
        return f"{int(rng.integers(1, 96)):02d}{int(rng.integers(0, 1000)):03d}"
    if r < 0.5:  # a phone number in pairs
        return "0" + str(int(rng.integers(1, 8))) + "".join(f" {int(rng.integers(0, 100)):02d}" for _ in range(4))
    if r < 0.75:
        return str(int(10 ** rng.uniform(0, 5)))
    euros, cents = int(10 ** rng.uniform(0, 4)), int(rng.integers(0, 100))
    return (f"{euros},{cents:02d}", f"{euros}.{cents:02d}", f"{euros:,}".replace(",", " ") + f",{cents:02d}")[
        int(rng.integers(3))]


def _drawable(text: str) -> bool:
    """Every character is a Hershey glyph, or one with an accent the renderer draws (é = e + acute)."""
    return all(c.isascii() or c.upper() in ACCENTS for c in text)


def _capitals(pools: dict[str, NamePool], rng: np.random.Generator) -> str:
    """A name in block capitals with the accents it is spelled with (one the renderer can draw)."""
    for _ in range(20):
        name = sample_name(pools, rng)
        if _drawable(name):
            break
    return normalize_label(name, upper=True) if _drawable(name) else to_label(name)


WORD_LANGUAGE, WORD_COUNT = "fr", 20_000  # the forms' language; the wordfreq list's most frequent words


@cache
def common_words() -> tuple[str, ...]:
    """The most frequent words of ``WORD_LANGUAGE`` (wordfreq's list) that a pen here can write: letters, accents the
    renderer draws, an inner apostrophe or hyphen (``aujourd'hui``); digits and symbols are the other kinds'."""
    from wordfreq import top_n_list

    words = (unicodedata.normalize("NFC", w) for w in top_n_list(WORD_LANGUAGE, WORD_COUNT))
    return tuple(w for w in words if 2 <= len(w) <= 24 and _drawable(w) and w.replace("'", "").replace("-", "").isalpha()
                 and w[0].isalpha() and w[-1].isalpha())


def _word(pools: dict[str, NamePool], rng: np.random.Generator) -> str:
    """A common word or a name in its original spelling, lower case or capitalised (the label keeps its accents)."""
    if rng.random() < 0.5:
        words = common_words()
        word = words[int(rng.integers(len(words)))]
        return word if rng.random() < 0.6 else word.capitalize()
    for _ in range(20):
        word = unicodedata.normalize("NFC", pools["first" if rng.random() < 0.5 else "last"].sample(rng))
        if _drawable(word) and 2 <= len(word) <= 24:
            break
    return word.lower() if rng.random() < 0.4 else word


def sample_field(kind: str, pools: dict[str, NamePool], rng: np.random.Generator) -> tuple[str, str, str]:
    """(what is written, its label, the caption set) of one field of ``kind`` (``mixed`` draws a kind)."""
    if kind == "mixed":
        kind = ("capitals", "dates", "numbers", "words", "written-date")[
            int(rng.choice(5, p=(0.3, 0.15, 0.2, 0.25, 0.1)))]
    if kind == "names":
        name = sample_name(pools, rng)
        return name, to_label(name), "names"
    if kind == "capitals":
        name = _capitals(pools, rng)
        return name, name, "names"
    if kind == "words":
        word = _word(pools, rng)
        return word, normalize_label(word, upper=False), "words"
    if kind in ("dates", "written-date"):
        date = _date(rng, written=kind == "written-date")
        return date, normalize_label(date, upper=False), "dates"
    if kind == "numbers":
        number = _number(rng)
        return number, number, "numbers"
    raise ValueError(f"unknown kind of synthetic field {kind!r}; choose from {', '.join(KINDS)}")


def make_sample(seed: int, index: int, pools: dict[str, NamePool], kind: str = "names") -> tuple[str, bytes]:
    """(label, JPEG bytes) for image ``index`` of ``seed``."""
    rng = np.random.default_rng([seed, index])
    if kind == "names":  # as it always was: the default data of every earlier version stays the same
        name = sample_name(pools, rng)
        img, label = render(name, rng), to_label(name)
    else:
        text, label, captions = sample_field(kind, pools, rng)
        img = render(text, rng, label=label, captions=FIELD_CAPTIONS.get(captions, CAPTIONS))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=int(rng.integers(35, 95)))
    return label, buf.getvalue()


_POOLS: dict | None = None


def _work(args: tuple[int, int, int, str, str, str]) -> list[tuple[str, str]]:
    global _POOLS
    seed, start, stop, folder, prefix, kind = args
    if _POOLS is None:
        _POOLS = build_pools()
    rows = []
    for i in range(start, stop):
        label, data = make_sample(seed, i, _POOLS, kind)
        fname = f"{prefix}_{i + 1:05d}.jpg"
        (Path(folder) / fname).write_bytes(data)
        rows.append((fname, label))
    return rows


def generate(out: str | Path, n: int, seed: int = 0, split: str = "train", workers: int = 1, progress=None,
             kind: str = "names") -> Path:
    """Write ``n`` images of ``kind`` fields and ``written_name_{split}_v2.csv`` in Kaggle layout under ``out``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of synthetic field {kind!r}; choose from {', '.join(KINDS)}")
    out = Path(out)
    folder = out / f"{split}_v2" / split
    folder.mkdir(parents=True, exist_ok=True)
    chunk = 500
    tasks = [(seed, s, min(n, s + chunk), str(folder), split.upper(), kind) for s in range(0, n, chunk)]
    rows: list[tuple[str, str]] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_work, tasks):
                rows += part
                if progress:
                    progress(len(part))
    else:
        for t in tasks:
            part = _work(t)
            rows += part
            if progress:
                progress(len(part))
    table = out / f"written_name_{split}_v2.csv"
    tmp = table.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["FILENAME", "IDENTITY"])
        w.writerows(rows)
    tmp.replace(table)
    write_rules(out, label_rules(kind))  # an import or training without options reads the labels as written
    return out
