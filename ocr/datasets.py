"""Reading data in the Kaggle ``landlord/handwriting-recognition`` layout, and serving it to training.

The same layout is written by ``ocr.synth``, so one importer serves the real and the synthetic data:

    written_name_{split}_v2.csv        FILENAME,IDENTITY
    {split}_v2/{split}/FILENAME         the images
"""

from __future__ import annotations

import csv
import hashlib
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ocr.alphabet import Alphabet
from ocr.preprocess import PreprocessConfig, load_image, normalize, pad_batch, resize_gray, to_gray

SPLITS = ("train", "validation", "test")
REASONS = ("blank", "unreadable", "empty", "bad_chars", "bad_image")
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    split: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Excluded:
    filename: str
    split: str
    raw_label: str
    reason: str
    detail: str = ""
    bad_chars: str = ""


@dataclass
class ImportResult:
    """What an import found: usable samples, excluded rows with their reason, and per-file errors."""

    root: Path
    samples: list[Sample] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rows: int = 0

    def split(self, *names: str) -> list[Sample]:
        return [s for s in self.samples if s.split in names]

    def summary(self) -> dict:
        by_reason = Counter(e.reason for e in self.excluded)
        examples: dict[str, list[str]] = {}
        for e in self.excluded:
            ex = examples.setdefault(e.reason, [])
            if len(ex) < MAX_EXAMPLES:
                ex.append(f"{e.filename}: {e.detail or e.raw_label!r}")
        bad_chars = Counter(c for e in self.excluded for c in e.bad_chars)
        return {
            "root": str(self.root),
            "rows": self.rows,
            "usable": len(self.samples),
            "excluded": {r: by_reason.get(r, 0) for r in REASONS},
            "splits": {s: n for s in SPLITS if (n := sum(1 for x in self.samples if x.split == s))},
            "bad_characters": dict(bad_chars.most_common()),
            "examples": examples,
            "errors": self.errors,
        }


def csv_path(root: Path, split: str) -> Path:
    return root / f"written_name_{split}_v2.csv"


def image_dir(root: Path, split: str) -> Path:
    return root / f"{split}_v2" / split


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract a zip into ``target``, refusing any member whose path would land outside it."""
    target = target.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            dest = (target / member.filename).resolve()
            if not dest.is_relative_to(target):
                raise ValueError(f"unsafe path in zip: {member.filename!r} escapes the target folder")
        zf.extractall(target)
    return target


def find_root(path: Path) -> Path:
    """The folder that holds the ``written_name_*_v2.csv`` files (the given one or one level down)."""
    if any(csv_path(path, s).exists() for s in SPLITS):
        return path
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if any(csv_path(child, s).exists() for s in SPLITS):
            return child
    raise ValueError(f"{path}: no written_name_{{train,validation,test}}_v2.csv found (not a Kaggle-layout folder)")


def open_source(source: str | Path) -> Path:
    """A folder or a zip in Kaggle layout -> the folder to read (zips are extracted once beside themselves)."""
    source = Path(source)
    if not source.exists():
        raise ValueError(f"{source}: no such file or folder")
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise ValueError(f"{source}: not a folder or a zip file")
        target = source.with_suffix("")
        marker = target / ".extracted"
        if not marker.exists():
            safe_extract(source, target)
            marker.write_text(source.name)
        source = target
    return find_root(source)


def check_image(path: Path) -> str:
    """'' when ``path`` decodes as an image, else the reason it does not."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
    except FileNotFoundError:
        return "file not found"
    try:
        with Image.open(path) as im:
            im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))  # fast JPEG check
            im.load()
    except Image.DecompressionBombError:
        return f"image too large (over {Image.MAX_IMAGE_PIXELS:,} pixels)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"not a readable image ({exc})"
    return ""


def classify_label(raw: str, alphabet: Alphabet) -> tuple[str, str, str]:
    """(label, reason, bad characters): reason is '' for a usable label."""
    label = raw.strip().upper()
    if not label:
        return label, "blank", ""
    if label == "UNREADABLE":
        return label, "unreadable", ""
    if label == "EMPTY":
        return label, "empty", ""
    bad = "".join(alphabet.invalid_chars(label))
    return label, ("bad_chars" if bad else ""), bad


def import_kaggle(
    source: str | Path,
    splits: tuple[str, ...] | None = None,
    alphabet: Alphabet = Alphabet(),
    check_images: bool = True,
) -> ImportResult:
    """Read a Kaggle-layout folder or zip. Never raises for bad rows: they are excluded with a reason."""
    root = open_source(source)
    result = ImportResult(root=root)
    wanted = splits or tuple(s for s in SPLITS if csv_path(root, s).exists())
    for split in wanted:
        table = csv_path(root, split)
        if not table.exists():
            result.errors.append(f"{table.name}: missing")
            continue
        images = Path(os.path.normpath(image_dir(root, split).absolute()))  # '..' in the given path too
        with table.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = set(reader.fieldnames or [])
            missing = {"FILENAME", "IDENTITY"} - columns
            if missing:
                result.errors.append(
                    f"{table.name}: missing column(s) {', '.join(sorted(missing))} "
                    f"(found {', '.join(sorted(columns)) or 'none'}); split {split!r} skipped"
                )
                continue
            for row in reader:
                result.rows += 1
                filename = (row["FILENAME"] or "").strip()
                raw = row["IDENTITY"] or ""
                label, reason, bad = classify_label(raw, alphabet)
                detail = f"characters outside the alphabet {bad!r} in {label!r}" if bad else ""
                path = Path(os.path.normpath(images / filename))  # lexical: '..' cannot escape, symlinks may point anywhere
                if not reason:
                    if not filename or not path.is_relative_to(images):
                        reason, detail = "bad_image", f"path {filename!r} is outside the image folder"
                    elif check_images and (problem := check_image(path)):
                        reason, detail = "bad_image", problem
                if reason:
                    result.excluded.append(Excluded(filename, split, raw, reason, detail, bad))
                else:
                    result.samples.append(Sample(path, label, split))
    return result


def parse_data_arg(arg: str) -> tuple[str, tuple[str, ...] | None]:
    """``DIR[:SPLITS]`` -> (DIR, splits or None)."""
    head, sep, tail = arg.rpartition(":")
    if sep and tail and all(s in SPLITS for s in tail.split(",")):
        return head, tuple(tail.split(","))
    return arg, None


def default_train_splits(result: ImportResult) -> tuple[str, ...]:
    """Every split present except ``test``."""
    return tuple(s for s in SPLITS if s != "test" and any(x.split == s for x in result.samples))


def holdout_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Seeded (train, validation) split of ``samples``; the held-out part is ``fraction`` of them (at least 1)."""
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = max(1, round(len(samples) * fraction)) if len(samples) > 1 else 0
    val = [samples[i] for i in sorted(order[:n_val])]
    train = [samples[i] for i in sorted(order[n_val:])]
    return train, val


def data_fingerprint(samples: list[Sample]) -> str:
    """A short hash of (file, label) pairs: which data a run trained on."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.path.name}\t{s.label}\n".encode())
    return h.hexdigest()[:16]


class LineDataset(torch.utils.data.Dataset):
    """Samples decoded once into memory as gray uint8 at the model height; augmentation and
    normalisation run per item, so an epoch never touches the disk."""

    def __init__(self, samples: list[Sample], alphabet: Alphabet, cfg: PreprocessConfig, augment=None):
        self.samples = samples
        self.alphabet = alphabet
        self.cfg = cfg
        self.augment = augment
        self.targets = [alphabet.encode(s.label) for s in samples]
        self.images = [resize_gray(to_gray(load_image(s.path)), cfg) for s in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def keep(self, indices: list[int]) -> None:
        """Drop every item not in ``indices`` (samples, decoded images and targets together)."""
        self.samples = [self.samples[i] for i in indices]
        self.images = [self.images[i] for i in indices]
        self.targets = [self.targets[i] for i in indices]

    def __getitem__(self, i: int) -> tuple[np.ndarray, list[int]]:
        gray = self.images[i]
        if self.augment is not None:
            gray = self.augment(gray)
        return normalize(gray), self.targets[i]


def collate(items: list[tuple[np.ndarray, list[int]]]):
    """-> images (N,1,H,W), widths (N,), targets (sum L,), target_lengths (N,)."""
    images, widths = pad_batch([im for im, _ in items])
    targets = torch.tensor([c for _, t in items for c in t], dtype=torch.long)
    lengths = torch.tensor([len(t) for _, t in items], dtype=torch.long)
    return images, widths, targets, lengths


def summary_text(summary: dict) -> str:
    ex = summary["excluded"]
    lines = [
        f"{summary['root']}",
        f"rows read: {summary['rows']:,}   usable: {summary['usable']:,}   excluded: {sum(ex.values()):,}",
        "excluded per reason: " + ", ".join(f"{k} {v:,}" for k, v in ex.items()),
        "usable per split: " + (", ".join(f"{k} {v:,}" for k, v in summary["splits"].items()) or "none"),
    ]
    if summary["bad_characters"]:
        lines.append("characters outside the alphabet: " + ", ".join(f"{c!r} x{n}" for c, n in summary["bad_characters"].items()))
    for reason, examples in summary["examples"].items():
        lines.append(f"  e.g. {reason}: " + "; ".join(examples))
    lines += [f"error: {e}" for e in summary["errors"]]
    return "\n".join(lines)


__all__ = [
    "Sample", "Excluded", "ImportResult", "import_kaggle", "open_source", "safe_extract", "parse_data_arg",
    "holdout_split", "LineDataset", "collate", "data_fingerprint", "summary_text",
]
