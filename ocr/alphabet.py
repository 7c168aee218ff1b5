"""The character set a model reads, the label <-> index mapping CTC needs, and the one way a label is normalised.

Index 0 is always the CTC blank; character i of the alphabet string is class i + 1. A model's character set is data:
it is saved in every checkpoint and export, and a new run takes it from its training labels or a named set
(``resolve_charset``); fine-tuning onto new characters appends them (``Alphabet.grow``), so the classes a model knows
keep their indices and their weights.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# What the Kaggle name labels use (upper-case letters, space, hyphen, apostrophe).
DEFAULT_CHARS = " '-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BLANK = 0

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ACCENTED_UPPER = "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝŒŸ"
NAMED_CHARSETS = {
    "names": DEFAULT_CHARS,
    # numbers, amounts, dates and postcodes as written on forms
    "digits": " ()+,-./0123456789:",
    # letters of both cases with the usual Western European accents, digits, common punctuation and symbols
    "latin": (" !\"#$%&'()*+,-./0123456789:;=?@" + _UPPER + "[]_" + _UPPER.lower() + _ACCENTED_UPPER
              + _ACCENTED_UPPER.lower().replace("ÿ", "") + "ßÿ€£°"),
}
CHARSET_CHOICES = ("auto", "data", *NAMED_CHARSETS)  # or the path of a file that lists the characters


class LabelError(ValueError):
    """A label no dataset can take, with a message meant for the user."""


class CharsetError(ValueError):
    """A character set that cannot be used (an empty file, duplicates, a character no set allows)."""


@dataclass(frozen=True)
class Alphabet:
    chars: str = DEFAULT_CHARS

    def __post_init__(self) -> None:
        if not self.chars:
            raise CharsetError("the character set is empty")
        dup = sorted({c for c in self.chars if self.chars.count(c) > 1})
        if dup:
            raise CharsetError(f"the character set has duplicate characters: {' '.join(repr(c) for c in dup)}")
        object.__setattr__(self, "_index", {c: i + 1 for i, c in enumerate(self.chars)})

    @property
    def num_classes(self) -> int:
        """Characters plus the CTC blank."""
        return len(self.chars) + 1

    def invalid_chars(self, text: str) -> list[str]:
        """Characters of ``text`` the alphabet cannot encode, in order of first appearance."""
        seen: dict[str, None] = {}
        for c in text:
            if c not in self._index:  # type: ignore[attr-defined]
                seen[c] = None
        return list(seen)

    def missing(self, texts: Iterable[str]) -> str:
        """The characters of ``texts`` this alphabet lacks, sorted."""
        return "".join(sorted({c for t in texts for c in t} - set(self.chars)))

    def grow(self, chars: str) -> Alphabet:
        """This alphabet with ``chars`` it lacks appended: every class it has keeps its index."""
        return Alphabet(self.chars + "".join(sorted(set(chars) - set(self.chars))))

    def encode(self, text: str) -> list[int]:
        bad = self.invalid_chars(text)
        if bad:
            raise ValueError(f"label {text!r} has characters outside the alphabet: {''.join(bad)!r}")
        return [self._index[c] for c in text]  # type: ignore[attr-defined]

    def decode(self, indices: list[int]) -> str:
        """Class indices (no blanks, already collapsed) back to text."""
        return "".join(self.chars[i - 1] for i in indices if i != BLANK)

    def describe(self) -> str:
        """The set in one short line: its name when it is a named set, else its size and characters."""
        for name, chars in NAMED_CHARSETS.items():
            if chars == self.chars:
                return f"{name} ({len(chars)} characters)"
        shown = self.chars if len(self.chars) <= 40 else self.chars[:37] + "..."
        return f"{len(self.chars)} characters {shown!r}"


def unusable_chars(text: str) -> list[str]:
    """Characters no character set allows: control and format characters, unassigned or private code points,
    whitespace other than the space, combining marks left alone, emoji and pictographs (symbols beyond U+2000)."""
    bad: dict[str, None] = {}
    for c in text:
        cat = unicodedata.category(c)
        if (cat[0] == "C" or (cat[0] == "Z" and c != " ") or cat[0] == "M"
                or (cat == "So" and ord(c) >= 0x2000)):
            bad[c] = None
    return list(bad)


def normalize_label(raw: str, upper: bool = True, strip_accents: bool = False) -> str:
    """The one normalisation of a label (imports, corrections, drawings, synthetic names): Unicode NFC, accents
    transliterated to ASCII when ``strip_accents`` (é -> e, ß -> ss, ’ -> '), upper case when ``upper``, runs of
    whitespace made one space, no space at either end."""
    text = unicodedata.normalize("NFC", raw or "")
    if strip_accents:
        from unidecode import unidecode

        text = unidecode(text)
    if upper:
        text = text.upper()
    return " ".join(text.split())


@dataclass(frozen=True)
class LabelRules:
    """How a dataset's labels are read at import (and corrected later): normalisation and which characters it takes.
    The Kaggle importer's defaults are the names forms': upper case, accents kept (so they are left out), the names
    set. ``charset`` ``any``: every character some set allows; the next training takes its set from the labels."""

    upper: bool = True
    strip_accents: bool = False
    charset: str = "names"  # a named set, "any", or a file

    def normalize(self, raw: str) -> str:
        return normalize_label(raw, self.upper, self.strip_accents)

    def validate(self, label: str) -> str:
        """The label normalised, or a ``LabelError`` for an empty or too long label or one with characters no set
        allows (control characters, emoji): the one check of a typed label (corrections, drawings). Characters outside
        a dataset's set are not refused here: the next training grows the model by them."""
        from ocr.limits import MAX_LABEL_LENGTH

        text = self.normalize(label)
        if not text:
            raise LabelError("the label is empty; mark the sample unreadable, empty or excluded instead")
        if len(text) > MAX_LABEL_LENGTH:
            raise LabelError(f"the label is {len(text)} characters long (at most {MAX_LABEL_LENGTH})")
        bad = unusable_chars(text)
        if bad:
            raise LabelError(f"characters no character set allows: {' '.join(repr(c) for c in bad)} "
                             "(control characters, tabs, emoji and pictographs)")
        return text

    def outside(self, label: str) -> list[str]:
        """Characters of an already normalised label this dataset does not take, in order of first appearance."""
        bad = unusable_chars(label)
        if self.charset != "any":
            bad += [c for c in named_or_file(self.charset).invalid_chars(label) if c not in bad]
        return bad

    @classmethod
    def of_model(cls, alphabet: Alphabet) -> LabelRules:
        """Labels as a model writes them: upper-cased unless its set has lower case, any character (those it cannot
        write are the caller's to leave out or to grow the model by)."""
        return cls(upper=not any(c.islower() for c in alphabet.chars), charset="any")

    @classmethod
    def given(cls, upper: bool | None = None, strip_accents: bool | None = None,
              charset: str | None = None) -> LabelRules | None:
        """The rules a caller asked for, the defaults filling what it left out; None when it asked for nothing (the
        data's own ``label_rules.json``, else the defaults, apply)."""
        if upper is None and strip_accents is None and charset is None:
            return None
        d = cls()
        return cls(upper=d.upper if upper is None else upper, strip_accents=bool(strip_accents),
                   charset=charset or d.charset)

    @classmethod
    def from_dict(cls, d: dict | None) -> LabelRules:
        return cls(**{k: v for k, v in (d or {}).items() if k in ("upper", "strip_accents", "charset")})


def named_or_file(spec: str) -> Alphabet:
    """A named set (``names``, ``digits``, ``latin``) or a UTF-8 file listing the characters (line breaks ignored; a
    space must be written as one)."""
    if spec in NAMED_CHARSETS:
        return Alphabet(NAMED_CHARSETS[spec])
    path = Path(spec)
    if not path.is_file():
        raise CharsetError(f"unknown character set {spec!r}: choose from {', '.join(CHARSET_CHOICES)} or give a file "
                           "that lists the characters")
    try:
        chars = path.read_text(encoding="utf-8").replace("\r", "").replace("\n", "")
    except (OSError, UnicodeDecodeError) as exc:
        raise CharsetError(f"{path}: not a readable UTF-8 text file ({exc.__class__.__name__})") from None
    chars = unicodedata.normalize("NFC", chars)
    if not chars:
        raise CharsetError(f"{path}: the character set file is empty")
    dup = sorted({c for c in chars if chars.count(c) > 1})
    if dup:
        raise CharsetError(f"{path}: characters listed more than once: {' '.join(repr(c) for c in dup)}")
    bad = unusable_chars(chars)
    if bad:
        raise CharsetError(f"{path}: characters no set allows: {' '.join(repr(c) for c in bad)}")
    return Alphabet(chars)


def resolve_charset(spec: str, labels: Iterable[str]) -> Alphabet:
    """The character set of a new model: ``auto`` the first of names, digits, latin that holds every label (else the
    labels' own characters after latin's), ``data`` exactly the labels' characters, or a named set or file."""
    used = {c for label in labels for c in label}
    if spec == "data" or spec == "auto":
        bad = unusable_chars("".join(sorted(used)))
        if bad:
            raise CharsetError(f"labels hold characters no set allows: {' '.join(repr(c) for c in bad)}")
        if not used:
            raise CharsetError("no labels to take a character set from")
        if spec == "data":
            return Alphabet("".join(sorted(used)))
        for name in ("names", "digits", "latin"):
            if used <= set(NAMED_CHARSETS[name]):
                return Alphabet(NAMED_CHARSETS[name])
        return Alphabet(NAMED_CHARSETS["latin"]).grow("".join(used))
    return named_or_file(spec)
