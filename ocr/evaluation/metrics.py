"""Recognition metrics. Rates are sums of errors over sums of lengths, not means of ratios."""

from __future__ import annotations

import difflib
from collections import Counter, defaultdict

import editdistance


def char_accuracy(label: str, prediction: str) -> float:
    """Similarity of two strings by ``difflib.SequenceMatcher`` (what the original project reported)."""
    if not label and not prediction:
        return 1.0
    return difflib.SequenceMatcher(None, label, prediction).ratio()


def edit_distance(a: str, b: str) -> int:
    return int(editdistance.eval(a, b))


def cer(labels: list[str], predictions: list[str]) -> float:
    """Character error rate: total Levenshtein distance / total label characters."""
    chars = sum(len(s) for s in labels)
    return sum(edit_distance(a, b) for a, b in zip(labels, predictions)) / max(1, chars)


def wer(labels: list[str], predictions: list[str]) -> float:
    """Word error rate: Levenshtein distance over word sequences / total label words."""
    words = sum(len(s.split()) for s in labels)
    return sum(int(editdistance.eval(a.split(), b.split())) for a, b in zip(labels, predictions)) / max(1, words)


def exact_match(labels: list[str], predictions: list[str]) -> float:
    return sum(a == b for a, b in zip(labels, predictions)) / max(1, len(labels))


def accuracy_by_length(labels: list[str], predictions: list[str]) -> dict[int, dict[str, float]]:
    """{label length: {'n': count, 'exact_match': rate}}, sorted by length."""
    groups: dict[int, list[bool]] = defaultdict(list)
    for a, b in zip(labels, predictions):
        groups[len(a)].append(a == b)
    return {k: {"n": len(v), "exact_match": sum(v) / len(v)} for k, v in sorted(groups.items())}


def confusions(labels: list[str], predictions: list[str], top: int = 20) -> list[tuple[str, str, int]]:
    """Most frequent character substitutions, deletions and insertions as (label char, predicted char, count).

    An empty string stands for a missing character (deletion: predicted '', insertion: label '').
    """
    counts: Counter[tuple[str, str]] = Counter()
    for a, b in zip(labels, predictions):
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if op == "replace" and i2 - i1 == j2 - j1:
                counts.update(zip(a[i1:i2], b[j1:j2]))
            elif op == "replace":
                counts[(a[i1:i2], b[j1:j2])] += 1
            elif op == "delete":
                counts.update((c, "") for c in a[i1:i2])
            elif op == "insert":
                counts.update(("", c) for c in b[j1:j2])
    return [(x, y, n) for (x, y), n in counts.most_common(top)]


def summarize(labels: list[str], predictions: list[str]) -> dict[str, float]:
    """The headline numbers of a run over one split."""
    n = len(labels)
    return {
        "n": n,
        "exact_match": exact_match(labels, predictions),
        "char_accuracy": sum(char_accuracy(a, b) for a, b in zip(labels, predictions)) / max(1, n),
        "cer": cer(labels, predictions),
        "wer": wer(labels, predictions),
        "mean_edit_distance": sum(edit_distance(a, b) for a, b in zip(labels, predictions)) / max(1, n),
    }
