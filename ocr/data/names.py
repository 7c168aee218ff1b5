"""Real first names and surnames with their frequency ranks, for the synthetic data.

Drawn from the ``names-dataset`` package (ranks per country from a large public corpus). Loading
it takes ~12 s and ~2 GB, so the few thousand names we use are extracted once into a small JSON
cache. Names keep their original spelling (accents included): the label is the transliteration,
the accents tell the renderer where a writer might add them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocr.alphabet import Alphabet, normalize_label

CACHE_VERSION = 1
# France first, then the origins most common in France that the FR ranks under-represent.
ORIGINS = {"FR": 0.82, "MA": 0.05, "DZ": 0.05, "TN": 0.02, "PT": 0.04, "TR": 0.02}
TOP_N = 3000
ZIPF_S = 0.9  # frequency ~ 1 / (rank + 8) ** s: a head of common names and a long tail


def cache_dir() -> Path:
    return Path(os.environ.get("HWR_CACHE_DIR", Path.home() / ".cache" / "hwr-ocr"))


def to_label(name: str) -> str:
    """Original spelling -> label of the names set: transliterated, upper case, single spaces."""
    return normalize_label(name, upper=True, strip_accents=True)


def _extract() -> dict:
    from names_dataset import NameDataset

    nd = NameDataset()
    table: dict = {"version": CACHE_VERSION, "first": {}, "last": {}}
    for country in ORIGINS:
        firsts = nd.get_top_names(n=TOP_N, country_alpha2=country).get(country, {})
        # interleave the genders so rank i of the merged list is about rank i/2 of each
        merged = [n for pair in zip(firsts.get("M", []), firsts.get("F", [])) for n in pair]
        table["first"][country] = merged
        table["last"][country] = nd.get_top_names(n=TOP_N, use_first_names=False, country_alpha2=country).get(country, [])
    return table


@contextmanager
def building(path: Path) -> Iterator[None]:
    """Held while the cache file ``path`` is built: processes that start together on a fresh machine (a dashboard, its
    worker, a command) build it once, and the others wait for it instead of building it again."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield


def write_cache(path: Path, text: str) -> None:
    """Written whole or not at all (a reader never sees half a file)."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def load_table(path: Path | None = None) -> dict:
    path = path or cache_dir() / f"names-v{CACHE_VERSION}.json"
    if not path.exists():
        with building(path):
            if not path.exists():
                write_cache(path, json.dumps(_extract(), ensure_ascii=False))
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class NamePool:
    """Names (original spelling) with sampling probabilities."""

    names: list[str]
    probs: np.ndarray

    def sample(self, rng: np.random.Generator) -> str:
        return self.names[int(rng.choice(len(self.names), p=self.probs))]


def build_pools(alphabet: Alphabet = Alphabet(), table: dict | None = None) -> dict[str, NamePool]:
    """{'first': pool, 'last': pool}: every origin weighted by ORIGINS, names by Zipf on rank."""
    table = table or load_table()
    pools = {}
    for kind in ("first", "last"):
        weights: dict[str, float] = {}
        for country, share in ORIGINS.items():
            names = [n for n in table[kind].get(country, []) if _usable(n, alphabet)]
            if not names:
                continue
            w = 1.0 / (np.arange(len(names)) + 8.0) ** ZIPF_S
            w = share * w / w.sum()
            for n, wi in zip(names, w):
                weights[n] = weights.get(n, 0.0) + float(wi)
        names = sorted(weights)
        probs = np.array([weights[n] for n in names])
        pools[kind] = NamePool(names, probs / probs.sum())
    return pools


def _usable(name: str, alphabet: Alphabet) -> bool:
    label = to_label(name)
    return 2 <= len(label) <= 24 and not alphabet.invalid_chars(label) and label[0].isalpha()
