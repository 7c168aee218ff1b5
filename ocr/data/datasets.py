"""Reading data in the Kaggle ``landlord/handwriting-recognition`` layout, and serving it to training.

The same layout is written by ``ocr.data.synth``, so one importer serves the real and the synthetic data:

    written_name_{split}_v2.csv        FILENAME,IDENTITY
    {split}_v2/{split}/FILENAME         the images
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ocr.alphabet import Alphabet, LabelRules
from ocr.limits import MAX_LABEL_LENGTH, Limits, limits
from ocr.preprocess import PreprocessConfig, check_size, ink_map, load_image

SPLITS = ("train", "validation", "test")
REASONS = ("blank", "unreadable", "empty", "bad_chars", "too_long", "bad_image", "conflicting")
MAX_EXAMPLES = 5
LINK_LOOP = "a symbolic link loop (its links lead back to each other, never to a file)"


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
    """What an import found: usable samples, excluded rows with their reason, repeated rows dropped, and per-file
    errors."""

    root: Path
    samples: list[Sample] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rows: int = 0
    duplicates: int = 0
    rules: LabelRules = field(default_factory=LabelRules)  # how its labels were read

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
            "duplicates": self.duplicates,
            "splits": {s: n for s in SPLITS if (n := sum(1 for x in self.samples if x.split == s))},
            "bad_characters": dict(bad_chars.most_common()),
            "label_rules": asdict(self.rules),
            "examples": examples,
            "errors": self.errors,
        }


LABEL_RULES = "label_rules.json"  # beside the CSVs: how the data's own labels are read (``ocr synth`` writes it)


def write_rules(root: Path, rules: LabelRules) -> Path:
    """Record beside a dataset's CSVs how its labels are read, so an import without options reads them as meant."""
    path = Path(root) / LABEL_RULES
    path.write_text(json.dumps(asdict(rules)) + "\n", encoding="utf-8")
    return path


def rules_of(root: Path) -> LabelRules | None:
    """The label rules a dataset carries (``LABEL_RULES``), or None; an unreadable file is a ``DatasetError``."""
    path = Path(root) / LABEL_RULES
    if not path.is_file():
        return None
    try:
        return LabelRules.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path} is not readable label rules ({exc.__class__.__name__})") from None


def csv_path(root: Path, split: str) -> Path:
    return root / f"written_name_{split}_v2.csv"


def image_dir(root: Path, split: str) -> Path:
    return root / f"{split}_v2" / split


class DatasetError(ValueError):
    """A source that cannot be read at all (bad zip, unreadable CSV), with a message meant for the user."""


class NotKaggleLayout(DatasetError):
    """A folder without ``written_name_*_v2.csv`` (it may still be a folder of unlabelled images)."""


def _refuse_encrypted(archive: Path, members: list[zipfile.ZipInfo]) -> None:
    """A password-protected zip is refused before anything is written: it cannot be read without the password."""
    if any(m.flag_bits & 0x1 for m in members):
        raise DatasetError(f"{archive.name} is encrypted (password-protected zip): not supported; unzip it first "
                           "and import the folder")


def _member_problem(member: zipfile.ZipInfo, target: Path) -> str:
    name = member.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name:
        return "an absolute or Windows path"
    if not (target / name).resolve().is_relative_to(target.resolve()):
        return "a path that escapes the target folder"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "a symbolic link"
    return ""


def safe_extract(archive: Path, target: Path, lim: Limits | None = None, marker: str | None = None) -> Path:
    """Extract a zip into the new folder ``target``. Every member is checked before anything is written: no path that
    escapes the folder, no link, total uncompressed size and compression ratio within the limits. The files appear
    under ``target`` only once all are written (a failed extraction leaves nothing)."""
    lim = lim or limits()
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise DatasetError(f"{target} already exists: a zip is only extracted into a new folder")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{archive.name}: not a readable zip file ({exc})") from None
    with zf:
        members = zf.infolist()
        files = [m for m in members if not m.is_dir()]
        if not files:
            raise DatasetError(f"{archive.name}: the zip is empty")
        _refuse_encrypted(archive, members)
        if len(members) > lim.max_zip_members:
            raise DatasetError(f"{archive.name}: {len(members):,} entries, over the limit of {lim.max_zip_members:,}")
        for member in members:
            if problem := _member_problem(member, target):
                raise DatasetError(f"{archive.name}: unsafe member {member.filename!r} ({problem}); nothing was extracted")
        total = sum(m.file_size for m in files)
        packed = max(1, sum(m.compress_size for m in files))
        if total > lim.max_zip_bytes:
            raise DatasetError(f"{archive.name}: it would expand to {total / 1e9:.2f} GB, over the limit of "
                               f"{lim.max_zip_bytes / 1e9:g} GB (HWR_MAX_ZIP_GB raises it); nothing was extracted")
        if total / packed > lim.max_zip_ratio:
            raise DatasetError(f"{archive.name}: it would expand {total / packed:,.0f} times ({packed:,} -> {total:,} "
                               f"bytes), over the limit of {lim.max_zip_ratio:g}x (HWR_MAX_ZIP_RATIO raises it): "
                               "a zip bomb? nothing was extracted")
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            written = 0
            for member in members:
                dest = partial / member.filename
                if member.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, dest.open("wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > total:  # headers that lie about the sizes
                            raise DatasetError(f"{archive.name}: members expand beyond their declared sizes; "
                                               "nothing was extracted")
                        out.write(chunk)
            if marker is not None:  # written before the rename: a folder that exists is a complete extraction
                (partial / ".extracted").write_text(marker)
            os.replace(partial, target)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise DatasetError(f"{archive.name}: corrupt zip ({exc}); nothing was extracted") from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target


def extract_zip(archive: Path, parent: Path | None = None, lim: Limits | None = None) -> Path:
    """The folder a zip was extracted into: once, into a new folder named after it under ``parent`` (default: beside
    it); never into a folder that holds anything else (``NAME-2``, ``NAME-3``... when the name is taken)."""
    archive = Path(archive)
    if not zipfile.is_zipfile(archive):
        raise DatasetError(f"{archive.name}: " + ("not a readable zip file (corrupt or cut short)"
                                                   if archive.suffix.lower() == ".zip" else "not a folder or a zip file"))
    st = archive.stat()
    identity = f"{archive.resolve()} {st.st_size} {st.st_mtime_ns}"
    parent = Path(parent) if parent is not None else archive.parent
    parent.mkdir(parents=True, exist_ok=True)
    stem = archive.name.removesuffix(".zip").removesuffix(".ZIP") or "archive"
    for i in range(1, 1000):
        target = parent / (stem if i == 1 else f"{stem}-{i}")
        marker = target / ".extracted"
        if target.exists():
            if marker.is_file() and marker.read_text() == identity:
                return target
            continue
        return safe_extract(archive, target, lim, marker=identity)
    raise DatasetError(f"{archive.name}: no free folder name to extract it into under {parent}")


def find_root(path: Path) -> Path:
    """The folder that holds the ``written_name_*_v2.csv`` files (the given one or one level down)."""
    if any(csv_path(path, s).exists() for s in SPLITS):
        return path
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if any(csv_path(child, s).exists() for s in SPLITS):
            return child
    raise NotKaggleLayout(f"{path}: no written_name_{{train,validation,test}}_v2.csv found (not a Kaggle-layout folder)")


def open_source(source: str | Path, extract_to: Path | None = None) -> Path:
    """A folder or a zip in Kaggle layout -> the folder to read (a zip is extracted once, into a new folder under
    ``extract_to``, default beside it)."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or folder")
    if source.is_file():
        source = extract_zip(source, extract_to)
    return find_root(source)


def check_image(path: Path) -> str:
    """'' when ``path`` decodes as an image, else the reason it does not."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:  # a link loop, a file the user may not read
        return LINK_LOOP if exc.errno == errno.ELOOP else f"not a readable file ({exc.strerror})"
    try:
        with Image.open(path) as im:
            check_size(im)
            im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))  # fast JPEG check
            im.load()
    except IsADirectoryError:
        return "a folder, not an image file"
    except Image.DecompressionBombError:
        return f"image too large (over {Image.MAX_IMAGE_PIXELS:,} pixels)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"not a readable image ({exc})"
    return ""


def classify_label(raw: str, rules: LabelRules = LabelRules(), alphabet: Alphabet | None = None) -> tuple[str, str, str]:
    """(label, reason, bad characters): the label normalised by ``rules``; reason is '' for a usable label. Characters
    the rules' set (or ``alphabet``, e.g. a model's) does not take make it ``bad_chars``."""
    label = rules.normalize(raw)
    if not label:
        return label, "blank", ""
    if label.upper() == "UNREADABLE" and label.isupper():
        return label, "unreadable", ""
    if label.upper() == "EMPTY" and label.isupper():
        return label, "empty", ""
    if len(label) > MAX_LABEL_LENGTH:
        return label, "too_long", ""
    bad = rules.outside(label)
    if alphabet is not None:
        bad += [c for c in alphabet.invalid_chars(label) if c not in bad]
    return label, ("bad_chars" if bad else ""), "".join(bad)


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, symbolic links resolved, is in ``root`` (a link to a file elsewhere is not, nor a link loop,
    which leads nowhere)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a link loop: RuntimeError before Python 3.13, OSError since
        return False


def link_loop(path: Path) -> bool:
    """Whether ``path`` is a chain of symbolic links that never reaches a file (``a -> b -> a``): no image to read."""
    try:
        path.stat()
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _read_rows(table: Path):
    """Rows of a labels CSV, or a ``DatasetError`` naming the file and the line (encoding, malformed CSV, columns)."""
    try:
        with table.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = set(reader.fieldnames or [])
            missing = {"FILENAME", "IDENTITY"} - columns
            if missing:
                shown = ", ".join(sorted(c[:40] for c in columns)[:10]) or "none"
                raise DatasetError(f"{table.name}: missing column(s) {', '.join(sorted(missing))} (found {shown}); "
                                   "a labels CSV has the header FILENAME,IDENTITY")
            rows = [(row["FILENAME"] or "", row["IDENTITY"] or "") for row in reader]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{table.name}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start:,}); "
                           "save it as UTF-8 and import again") from None
    except csv.Error as exc:
        raise DatasetError(f"{table.name} line {reader.line_num + 1:,}: not a readable CSV ({exc})") from None
    return rows


def import_kaggle(
    source: str | Path,
    splits: tuple[str, ...] | None = None,
    alphabet: Alphabet | None = None,
    check_images: bool = True,
    extract_to: Path | None = None,
    rules: LabelRules | None = None,
) -> ImportResult:
    """Read a Kaggle-layout folder or zip, labels normalised and checked by ``rules`` (None: the data's own
    ``label_rules.json``, else the Kaggle names forms' defaults) and, given, a model's ``alphabet``. Never raises for
    bad rows: they are excluded with a reason; a source that cannot be read at all (bad zip, unreadable CSV) is a
    ``DatasetError``."""
    root = open_source(source, extract_to)
    rules = rules or rules_of(root) or LabelRules()
    result = ImportResult(root=root, rules=rules)
    wanted = splits or tuple(s for s in SPLITS if csv_path(root, s).exists())
    tables = {}
    for split in wanted:
        table = csv_path(root, split)
        if not table.exists():
            result.errors.append(f"{table.name}: missing")
            continue
        tables[split] = _read_rows(table)  # every CSV is read before any row is used: one bad file, no import
    for split, rows in tables.items():
        _add_split(result, split, rows, root, check_images, lambda raw: classify_label(raw, rules, alphabet))
    return result


def _image_problem(filename: str, path: Path, images: Path, root: Path, check_images: bool) -> str:
    """Why a row's image cannot be used ('' when it can); the path is checked before anything outside is read."""
    shown = repr(filename[:100])
    if not filename or not path.is_relative_to(images):
        return f"path {shown} is outside the image folder"
    if link_loop(path):
        return f"{shown} is {LINK_LOOP}"
    if not inside(path, root):
        return f"{shown} is a link to a file outside the dataset folder"
    return check_image(path) if check_images else ""


def _label_detail(label: str, reason: str, bad: str) -> str:
    """What is wrong with a label, for the rows the summary shows as examples."""
    if reason == "too_long":
        return f"label of {len(label):,} characters, over the limit of {MAX_LABEL_LENGTH}"
    return f"characters outside the character set {bad!r} in {label!r}" if bad else ""


def _conflicts(listed: list[tuple[Path, str]]) -> dict[Path, str]:
    """Files listed with more than one label, with the reason shown: which label is right is unknowable, so no row
    of such a file is trained on."""
    labels: dict[Path, list[str]] = {}
    for path, label in listed:
        if label not in (seen := labels.setdefault(path, [])):
            seen.append(label)
    return {path: f"listed with {len(ls)} different labels: " + ", ".join(repr(label[:40]) for label in ls[:5])
            for path, ls in labels.items() if len(ls) > 1}


def _add_split(result: ImportResult, split: str, rows: list[tuple[str, str]], root: Path, check_images: bool,
               classify: Callable[[str], tuple[str, str, str]]) -> None:
    """Sort one split's rows into ``result``: a row that repeats another (same file, same label) is counted and
    dropped; a file listed with two labels is excluded on every row."""
    images = Path(os.path.normpath(image_dir(root, split).absolute()))  # '..' in the given path too
    named = [(f.strip(), raw) for f, raw in rows]
    table = [(f, raw, Path(os.path.normpath(images / f)), *classify(raw)) for f, raw in named]  # lexical: no escape
    conflicts = _conflicts([(path, label) for f, _, path, label, _, _ in table if f and path.is_relative_to(images)])
    seen: set[tuple[Path, str]] = set()
    for filename, raw, path, label, reason, bad in table:
        result.rows += 1
        if (path, label) in seen:
            result.duplicates += 1
            continue
        seen.add((path, label))
        detail = _label_detail(label, reason, bad)
        if path in conflicts:
            reason, detail = "conflicting", conflicts[path]
        elif not reason and (problem := _image_problem(filename, path, images, root, check_images)):
            reason, detail = "bad_image", problem
        if reason:
            result.excluded.append(Excluded(filename[:200], split, raw[:MAX_LABEL_LENGTH], reason, detail, bad))
        else:
            result.samples.append(Sample(path, label, split))


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


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def image_files(root: Path, inside_only: bool = True) -> list[Path]:
    """The image files under ``root`` at any depth, sorted; links that lead outside it are left out unless asked."""
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [f for f in files if inside(f, root)] if inside_only else files


class LineDataset:
    """Samples decoded once into memory through ``ocr.preprocess.preprocess`` (the function evaluation, prediction
    and drawing use), kept as uint8 ink maps (ink 255, paper 0) so an epoch never touches the disk. Items are float
    ink maps in [0, 1] for validation; training batches and their augmentation come from ``ocr.data.batches``."""

    def __init__(self, samples: list[Sample], alphabet: Alphabet, cfg: PreprocessConfig):
        self.samples = samples
        self.alphabet = alphabet
        self.cfg = cfg
        self.targets = [alphabet.encode(s.label) for s in samples]
        self.images = [ink_map(load_image(s.path), cfg) for s in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def keep(self, indices: list[int]) -> None:
        """Drop every item not in ``indices`` (samples, decoded images and targets together)."""
        self.samples = [self.samples[i] for i in indices]
        self.images = [self.images[i] for i in indices]
        self.targets = [self.targets[i] for i in indices]

    def __getitem__(self, i: int) -> tuple[np.ndarray, list[int]]:
        return self.images[i].astype(np.float32) / 255, self.targets[i]


def summary_text(summary: dict) -> str:
    ex = summary["excluded"]
    lines = [
        f"{summary['root']}",
        f"rows read: {summary['rows']:,}   usable: {summary['usable']:,}   excluded: {sum(ex.values()):,}",
        "excluded per reason: " + ", ".join(f"{k} {v:,}" for k, v in ex.items()),
        "usable per split: " + (", ".join(f"{k} {v:,}" for k, v in summary["splits"].items()) or "none"),
    ]
    if summary.get("duplicates"):
        lines.append(f"repeated rows dropped (same file, same label): {summary['duplicates']:,}")
    if summary["bad_characters"]:
        lines.append("characters outside the alphabet: " + ", ".join(f"{c!r} x{n}" for c, n in summary["bad_characters"].items()))
    for reason, examples in summary["examples"].items():
        lines.append(f"  e.g. {reason}: " + "; ".join(examples))
    lines += [f"error: {e}" for e in summary["errors"]]
    return "\n".join(lines)


__all__ = [
    "Sample", "Excluded", "ImportResult", "import_kaggle", "open_source", "safe_extract", "parse_data_arg",
    "holdout_split", "image_files", "LineDataset", "data_fingerprint", "summary_text",
]
