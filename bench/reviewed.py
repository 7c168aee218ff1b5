"""The shared real labels as a person reviewed them by eye: ``bench/data/reviewed_labels.csv`` (file names and texts
only, no images).

Every one of the 995 usable rows was looked at, on contact sheets of the crop beside its label and the shipped
starter's readings (``python -m bench.contact_sheet --review --all-from 1``), the doubted ones again at twice the
size. A verdict per row:

- ``right``: the crop shows the label;
- ``wrong``: it shows another text, ``RIGHT_TEXT`` (what is written: a letter misread, dropped or added, a hyphen or
  apostrophe missed, spaces put around a hyphen);
- ``unsure``: a person cannot tell (a letter between two shapes, a misspelling the writer made);
- ``illegible``: the crop does not show the labelled text (cut off, another field).

Found: 54 wrong labels (5.4 %; 17 of the 199 rows 801-1000, which the benchmarks validate on), 26 unsure, 6 illegible.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, replace
from pathlib import Path

from ocr.data.datasets import Sample

REVIEWED = Path(__file__).resolve().parent / "data" / "reviewed_labels.csv"
VERDICTS = ("right", "wrong", "unsure", "illegible")


@dataclass(frozen=True)
class Review:
    label: str  # as in the shared CSV
    verdict: str
    right_text: str  # what the crop shows, for a wrong label
    note: str


@functools.cache
def reviews() -> dict[str, Review]:
    """Every reviewed row by file name."""
    with REVIEWED.open(newline="", encoding="utf-8") as f:
        rows = {r["FILENAME"]: Review(r["IDENTITY"], r["VERDICT"], r["RIGHT_TEXT"], r["NOTE"])
                for r in csv.DictReader(f)}
    bad = {n: r.verdict for n, r in rows.items() if r.verdict not in VERDICTS or (r.verdict == "wrong") != bool(
        r.right_text)}
    if bad:
        raise ValueError(f"{REVIEWED.name}: bad verdicts {bad}")
    return rows


def wrong(samples: list[Sample]) -> dict[Path, str]:
    """The samples whose label a person found wrong: {path: the text the crop shows}. A label that no longer matches the
    reviewed one (changed since) is left out."""
    seen = reviews()
    return {s.path: r.right_text for s in samples if (r := seen.get(s.path.name)) and r.verdict == "wrong"
            and r.label == s.label}


def verdict(sample: Sample) -> str:
    """``right``, ``wrong``, ``unsure``, ``illegible``, or ``unreviewed``."""
    r = reviews().get(sample.path.name)
    return r.verdict if r and r.label == sample.label else "unreviewed"


def corrected(samples: list[Sample]) -> list[Sample]:
    """The samples with every wrong label replaced by the text the crop shows."""
    fix = wrong(samples)
    return [replace(s, label=fix[s.path]) if s.path in fix else s for s in samples]
