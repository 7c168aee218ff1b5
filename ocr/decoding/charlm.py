"""A character n-gram language model of names, for beam search (shallow fusion).

Unlike the lexicon (``ocr.decoding.lexicon``), it never restricts the output to known names: it only tells the beam that
``GUILLAUME`` is a likelier spelling than ``GUILLAURE`` when the image leaves the choice open, and it still scores
``KOWALCZYK`` or a name it never saw. Interpolated Kneser-Ney (Chen & Goodman 1998) over characters, trained on the
names lexicon (every first name and surname of the synthetic data's origins) or any word list.

The names model counts every lexicon name once (so rare spellings are known) plus the names of the synthetic data's
pools in proportion to how often people bear them (so ``MARIE`` outweighs ``MARIEM``); that frequency weighting is
worth about 3 points of exact match on the real held-out images.

KenLM is the usual tool, but it has no wheel here and its model builder is a separate C++ binary; a character model
of ~100k names is small enough that counts in dictionaries train in a few seconds and answer in microseconds.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from functools import lru_cache

import numpy as np

from ocr.alphabet import Alphabet
from ocr.data.names import building, cache_dir, write_cache

BOS = "\x02"
EOS = "\x03"
CHARLM_VERSION = 3
DEFAULT_ORDER = 7
FREQUENCY_TOKENS = 100_000  # names drawn in proportion to their frequency, on top of one of each


MIN_DISCOUNT = 0.1


class CharLM:
    """P(next character | previous ``order - 1`` characters), with an end-of-word symbol.

    ``log_probs(context)`` returns a vector over the alphabet's classes (index 0, the CTC blank, unused) plus the end
    symbol at ``end_index``; ``context`` is the text read so far.
    """

    def __init__(self, words: list[str], alphabet: Alphabet = Alphabet(), order: int = DEFAULT_ORDER,
                 source: str = "words"):
        if order < 2:
            raise ValueError("order must be at least 2")
        words = [w for w in words if w and not alphabet.invalid_chars(w)]
        if not words:
            raise ValueError("no usable word to train the character model on")
        self.alphabet, self.order, self.source, self.n_words = alphabet, order, source, len(words)
        self.symbols = alphabet.chars + EOS
        self.end_index = alphabet.num_classes  # classes 1..len(chars) are the characters, then the end
        counts: list[Counter[str]] = [Counter() for _ in range(order + 1)]
        pad = BOS * (order - 1)
        for w in words:
            s = pad + w + EOS
            for i in range(order - 1, len(s)):
                counts[order][s[i - order + 1:i + 1]] += 1
        # lower orders: continuation counts, how many distinct characters precede the n-gram (Kneser-Ney)
        for k in range(order - 1, 0, -1):
            for gram in counts[k + 1]:
                counts[k][gram[1:]] += 1
        # per order: context -> the classes that follow it and their counts, and the discount from n1, n2
        index = {c: i for i, c in enumerate(self.symbols)}
        self._followers: list[dict[str, tuple[list[int], list[int]]]] = [{} for _ in range(order + 1)]
        self._discounts = [0.0] * (order + 1)
        for k in range(1, order + 1):
            for gram, c in sorted(counts[k].items()):
                classes, ns = self._followers[k].setdefault(gram[:-1], ([], []))
                classes.append(index[gram[-1]])
                ns.append(c)
            n1 = sum(1 for c in counts[k].values() if c == 1)
            n2 = sum(1 for c in counts[k].values() if c == 2)
            # at least 0.1: a small corpus (a model's few training labels) with no singletons would otherwise leave
            # no mass for unseen characters, and the LM would forbid a text instead of disfavouring it
            self._discounts[k] = max(n1 / (n1 + 2 * n2), MIN_DISCOUNT) if n1 + n2 else 0.5
        self._floor = self._unigram_floor()
        self._cached = lru_cache(maxsize=200_000)(self._log_probs)

    def log_probs(self, context: str) -> np.ndarray:
        """Log P(symbol | context) for every class: (num_classes + 1,), the blank at -inf."""
        h = (BOS * (self.order - 1) + context)[-(self.order - 1):]
        return self._cached(h)

    def _log_probs(self, h: str) -> np.ndarray:
        """Interpolated Kneser-Ney, unrolled from the longest context down: each order adds its followers' discounted
        counts, scaled by the mass the orders above handed down, and only those few followers are touched; the
        unigram order and the uniform floor, the same for every context, are one precomputed vector."""
        acc = [0.0] * len(self.symbols)
        scale = 1.0
        for k in range(self.order, 1, -1):
            followers = self._followers[k].get(h[len(h) - (k - 1):])
            if followers is None:
                continue
            classes, counts = followers
            total, d = sum(counts), self._discounts[k]
            for c, n in zip(classes, counts):
                acc[c] += scale * (n - d) / total
            scale *= d * len(counts) / total
        out = np.full(self.end_index + 1, -math.inf)
        out[1:] = np.log(np.array(acc) + scale * self._floor)
        return out

    def _unigram_floor(self) -> np.ndarray:
        """P(symbol) from the unigram order down to the uniform floor: what every context ends on."""
        classes, counts = self._followers[1][""]
        total, d = sum(counts), self._discounts[1]
        p = np.full(len(self.symbols), d * len(counts) / total / len(self.symbols))
        p[classes] += (np.array(counts, dtype=np.float64) - d) / total
        return p

    def score(self, text: str) -> float:
        """log P(text, then the end of the word)."""
        return _score(self, text)

    @classmethod
    def names(cls, alphabet: Alphabet = Alphabet(), order: int = DEFAULT_ORDER) -> CharLM:
        """Trained on the names lexicon; kept in the cache as JSON after the first use (training takes a few seconds;
        JSON, not a pickle, so nothing in the cache folder can run code when it is read)."""
        key = hashlib.sha1(alphabet.chars.encode()).hexdigest()[:8]
        path = cache_dir() / f"charlm-names-v{CHARLM_VERSION}-{order}-{key}.json"
        if path.exists():
            try:
                return cls.from_state(json.loads(path.read_text(encoding="utf-8")), alphabet, order)
            except (ValueError, KeyError, TypeError, OSError):  # a stale or broken cache is rebuilt
                pass
        with building(path):
            if path.exists():  # another process built it while this one waited
                try:
                    return cls.from_state(json.loads(path.read_text(encoding="utf-8")), alphabet, order)
                except (ValueError, KeyError, TypeError, OSError):
                    pass
            lm = cls(names_corpus(alphabet), alphabet, order, source="names-dataset")
            write_cache(path, json.dumps(lm.state(), ensure_ascii=False))
        return lm

    def state(self) -> dict:
        """Everything the model is, as JSON-safe data."""
        return {"version": CHARLM_VERSION, "alphabet": self.alphabet.chars, "order": self.order, "source": self.source,
                "n_words": self.n_words, "followers": self._followers, "discounts": self._discounts}

    @classmethod
    def from_state(cls, state: dict, alphabet: Alphabet, order: int) -> CharLM:
        if state["version"] != CHARLM_VERSION or state["alphabet"] != alphabet.chars or state["order"] != order:
            raise ValueError("cached model of another version, alphabet or order")
        lm = cls.__new__(cls)
        lm.alphabet, lm.order, lm.source, lm.n_words = alphabet, order, state["source"], state["n_words"]
        lm.symbols, lm.end_index = alphabet.chars + EOS, alphabet.num_classes
        lm._followers, lm._discounts = state["followers"], state["discounts"]
        lm._floor = lm._unigram_floor()
        lm._cached = lru_cache(maxsize=200_000)(lm._log_probs)
        return lm

    @classmethod
    def load(cls, spec: str, alphabet: Alphabet = Alphabet(), order: int = DEFAULT_ORDER) -> CharLM:
        """``names`` or the path of a word list (one per line, transliterated like labels)."""
        if spec == "names":
            return cls.names(alphabet, order)
        from ocr.decoding.lexicon import Lexicon

        return cls(sorted(Lexicon.from_file(spec, alphabet).words), alphabet, order, source=str(spec))


class MixedLM:
    """Character models of one alphabet interpolated: P(c | h) = sum_i w_i P_i(c | h).

    A model whose set grew beyond the names set (a names model fine-tuned onto dates, say) reads both: the names model
    knows names from ~100k of them, the model's own training labels know the rest; either alone would push the other's
    fields towards its own spelling."""

    def __init__(self, models: list[CharLM], weights: list[float]):
        if not models or len(models) != len(weights) or any(m.alphabet.chars != models[0].alphabet.chars
                                                                for m in models):
            raise ValueError("a mixture needs one weight per model and models of one alphabet")
        total = sum(weights)
        self.models, self.weights = models, [w / total for w in weights]
        self.alphabet, self.order = models[0].alphabet, max(m.order for m in models)
        self.symbols, self.end_index = models[0].symbols, models[0].end_index
        self.source = " + ".join(f"{m.source} ({w:.2g})" for m, w in zip(models, self.weights))
        self._log_weights = np.log(self.weights)[:, None]
        self._cached = lru_cache(maxsize=200_000)(self._log_probs)

    def log_probs(self, context: str) -> np.ndarray:
        return self._cached(context[-(self.order - 1):] if self.order > 1 else "")

    def _log_probs(self, context: str) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.logaddexp.reduce(np.stack([m.log_probs(context) for m in self.models]) + self._log_weights,
                                       axis=0)

    def score(self, text: str) -> float:
        """log P(text, then the end of the word)."""
        return _score(self, text)


def _score(lm: CharLM | MixedLM, text: str) -> float:
    lp = 0.0
    for i, c in enumerate(text + EOS):
        idx = lm.end_index if c == EOS else lm.symbols.index(c) + 1
        lp += float(lm.log_probs(text[:i])[idx])
    return lp


def names_corpus(alphabet: Alphabet = Alphabet(), frequency_tokens: int = FREQUENCY_TOKENS) -> list[str]:
    """Every lexicon name once, plus each pool name ``round(p * frequency_tokens)`` times (``ocr.data.names`` weights)."""
    from ocr.data.names import build_pools, to_label
    from ocr.decoding.lexicon import Lexicon

    words = sorted(Lexicon.names(alphabet).words)
    for pool in build_pools(alphabet).values():
        for name, p in zip(pool.names, pool.probs):
            words += [to_label(name)] * int(round(p * frequency_tokens))
    return words
