"""Lexicon-assisted decoding: prefer a known name among the beam's candidates.

The fields of the Kaggle forms are first names and surnames, and most of them are in ``names-dataset``. When one of
the beam-search candidates is a known name and its probability is not far below the best reading's (at least
``min_ratio`` of it), it replaces the best reading. Open-vocabulary readings stay when no candidate is a name, so
rare names still come out letter by letter. The lexicon is every name of the synthetic data's origins (about
108,000 labels), extracted once into the cache like the names table; a user's own word list (one per line) works too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ocr.alphabet import Alphabet
from ocr.data.names import ORIGINS, building, cache_dir, to_label, write_cache
from ocr.decoding.types import Prediction

LEXICON_VERSION = 1
MIN_RATIO = 0.01
PER_COUNTRY = 50_000


def _extract_names() -> list[str]:
    from names_dataset import NameDataset

    nd = NameDataset()
    labels: set[str] = set()
    for country in ORIGINS:
        firsts = nd.get_top_names(n=PER_COUNTRY, country_alpha2=country).get(country, {})
        for names in firsts.values():
            labels.update(to_label(n) for n in names)
        labels.update(to_label(n) for n in nd.get_top_names(n=PER_COUNTRY, use_first_names=False,
                                                             country_alpha2=country).get(country, []))
    return sorted(labels)


@dataclass(frozen=True)
class Lexicon:
    words: frozenset[str]
    source: str

    @classmethod
    def names(cls, alphabet: Alphabet = Alphabet()) -> Lexicon:
        """Every first name and surname of the origins in ``ocr.data.names.ORIGINS`` (cached after the first use)."""
        path = cache_dir() / f"lexicon-names-v{LEXICON_VERSION}.txt"
        if not path.exists():
            with building(path):
                if not path.exists():
                    write_cache(path, "\n".join(_extract_names()) + "\n")
        return cls.from_file(path, alphabet, source="names-dataset")

    @classmethod
    def from_file(cls, path: str | Path, alphabet: Alphabet = Alphabet(), source: str | None = None) -> Lexicon:
        """One word or name per line; lines outside the alphabet are skipped."""
        words = set()
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            label = to_label(line)
            if label and not alphabet.invalid_chars(label):
                words.add(label)
        if not words:
            raise ValueError(f"{path}: no usable word in the lexicon file")
        return cls(frozenset(words), source or str(path))

    @classmethod
    def load(cls, spec: str, alphabet: Alphabet = Alphabet()) -> Lexicon:
        """``names`` or the path of a word list."""
        return cls.names(alphabet) if spec == "names" else cls.from_file(spec, alphabet)

    def __contains__(self, text: str) -> bool:
        return text in self.words

    def __len__(self) -> int:
        return len(self.words)

    def apply(self, pred: Prediction, min_ratio: float = MIN_RATIO) -> Prediction:
        """The most probable candidate that is in the lexicon, if it is at least ``min_ratio`` as probable as the best
        reading; else the prediction unchanged. Needs beam-search candidates."""
        if not pred.candidates or pred.text in self.words:
            return pred
        best = pred.candidates[0][1]
        for text, p in pred.candidates:
            if text in self.words and p >= min_ratio * best:
                return replace(pred, text=text, confidence=p)
        return pred
