"""The character set a model reads, and the label <-> index mapping CTC needs.

Index 0 is always the CTC blank; character i of the alphabet string is class i + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

# What the Kaggle name labels use (upper-case letters, space, hyphen, apostrophe).
DEFAULT_CHARS = " '-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BLANK = 0


@dataclass(frozen=True)
class Alphabet:
    chars: str = DEFAULT_CHARS

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("alphabet has duplicate characters")
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

    def encode(self, text: str) -> list[int]:
        bad = self.invalid_chars(text)
        if bad:
            raise ValueError(f"label {text!r} has characters outside the alphabet: {''.join(bad)!r}")
        return [self._index[c] for c in text]  # type: ignore[attr-defined]

    def decode(self, indices: list[int]) -> str:
        """Class indices (no blanks, already collapsed) back to text."""
        return "".join(self.chars[i - 1] for i in indices if i != BLANK)
