"""How a model reads, configured once: the views of each image it averages, greedy, beam width, the character language
model and its weight, a lexicon. Every reader of the project (the CLI's evaluate and predict, the jobs, the Draw page) builds a
``Decoder`` from a ``DecoderConfig``, and every evaluation and prediction records the config it used, so a confidence
means the same everywhere."""

from __future__ import annotations

import warnings
import weakref
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch

from ocr.alphabet import NAMED_CHARSETS, Alphabet
from ocr.decoding.ctc import beam_decode_log_probs, greedy_decode, log_softmax
from ocr.decoding.types import DEFAULT_WEIGHT, VIEW_OFFSETS, Fusion, Prediction, views_allowed

LM_BEAM = 20  # a language model needs room in the beam to change the reading
LEXICON_BEAM = 10  # a lexicon picks among the beam's candidates
LEXICON_RATIO = 0.01
NAMES_SHARE = 0.5  # the names LM's weight in the mixture a model gets whose set grew beyond the names set


@dataclass(frozen=True)
class DecoderConfig:
    beam: int = 0  # 0: greedy (unless a language model or a lexicon asks for a beam)
    # a character language model in the beam (ocr.decoding.charlm): "names", "labels" (the model's training labels, kept in its
    # checkpoint) or a word-list file; "names" for a model whose character set is not the names set means "labels",
    # mixed with the names LM when the set holds the names set (a names model grown onto digits)
    lm: str | None = None
    lm_weight: float = DEFAULT_WEIGHT
    lexicon: str | None = None  # "names" or a word-list file: prefer a known word among the candidates (ocr.decoding.lexicon)
    lexicon_ratio: float = LEXICON_RATIO
    top_k: int = 5
    # test-time augmentation: the image read this many times, moved by VIEW_OFFSETS rows, the model's log-probabilities
    # averaged before decoding (ocr.recognize.read_views); each view costs one more run of the model
    views: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.beam <= 100:
            raise ValueError(f"beam={self.beam} must be between 0 (greedy) and 100")
        if not views_allowed(self.views):
            raise ValueError(f"views={self.views} must be between 1 (the image as it is) and {len(VIEW_OFFSETS)}")

    @property
    def beam_width(self) -> int:
        """The beam actually used: at least 20 with a language model, 10 with a lexicon; 0 means greedy."""
        return max(self.beam, LM_BEAM if self.lm else 0, LEXICON_BEAM if self.lexicon else 0)

    def describe(self) -> str:
        """A short name for reports and job results: ``greedy``, ``beam10``, ``beam20+names LM``..."""
        text = f"beam{self.beam_width}" if self.beam_width else "greedy"
        if self.lm:
            text += "+names LM" if self.lm == "names" and self.lm_weight == DEFAULT_WEIGHT else \
                f"+lm({self.lm}, {self.lm_weight:g})"
        if self.lexicon:
            text += f"+lexicon({self.lexicon}, {self.lexicon_ratio:g})"
        if self.views > 1:
            text += f"+{self.views} views"
        return text

    def to_dict(self) -> dict:
        return {**asdict(self), "beam_width": self.beam_width, "name": self.describe()}


class Decoder:
    """A ``DecoderConfig`` made ready for one alphabet (language model and lexicon loaded once). ``training_labels``
    (label -> count, from the model's checkpoint) is the corpus of the ``labels`` language model: the one a model
    gets when the names LM does not fit its character set (dates, numbers, lower case); without it, no LM.
    ``processes`` > 1 decodes a beam on that many worker processes (``ocr.decoding.parallel``): for large reads;
    ``close()`` (or ``with``) ends them, and so does the decoder's collection."""

    def __init__(self, config: DecoderConfig, alphabet: Alphabet, training_labels: dict[str, int] | None = None,
                 processes: int = 1):
        self.config, self.alphabet = config, alphabet
        self.fusion = None
        self.lm = config.lm
        names = NAMED_CHARSETS["names"]
        if self.lm == "names" and alphabet.chars != names:
            # a set grown from the names set keeps the names LM, mixed with its labels'; another set has its labels'
            self.lm = "names+labels" if set(names) <= set(alphabet.chars) else "labels"
        words: list[str] = []
        if self.lm in ("labels", "names+labels"):
            words = [w for w, n in (training_labels or {}).items() for _ in range(n) if not alphabet.invalid_chars(w)]
            self.lm = self.lm if words else None
        if self.lm:
            from ocr.decoding.charlm import CharLM, MixedLM

            if self.lm == "labels":
                lm = CharLM(words, alphabet, source="training labels")
            elif self.lm == "names+labels":
                lm = MixedLM([CharLM.names(alphabet), CharLM(words, alphabet, source="training labels")],
                             [NAMES_SHARE, 1 - NAMES_SHARE])
            else:
                lm = CharLM.load(self.lm, alphabet)
            self.fusion = Fusion(lm, weight=config.lm_weight)
        self.lexicon = None
        if config.lexicon:
            from ocr.decoding.lexicon import Lexicon

            self.lexicon = Lexicon.load(config.lexicon, alphabet)
        self._pool = None
        if processes > 1 and config.beam_width:
            from ocr.decoding.parallel import DecoderPool

            self._pool = DecoderPool(partial(Decoder, config, alphabet, training_labels), processes)
            weakref.finalize(self, self._pool.close)

    def __call__(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[Prediction]:
        """logits (T, N, C) and output lengths (N,) -> N predictions with P(text | image) as confidence."""
        if not self.config.beam_width:
            return greedy_decode(logits, lengths, self.alphabet)
        log_probs, lengths = log_softmax(logits), lengths.tolist()
        if self._pool is not None:
            try:
                return self._pool(log_probs, lengths)
            except BrokenProcessPool:  # a worker died (killed, out of memory): this process decodes from now on
                warnings.warn("a decoding process ended abruptly; decoding goes on in this process", stacklevel=2)
                self._pool = None
        return self.decode_log_probs(log_probs, lengths)

    def decode_log_probs(self, log_probs: np.ndarray, lengths: list[int]) -> list[Prediction]:
        """The beam (and the lexicon) over log probabilities (T, N, C) in numpy, in this process."""
        cfg = self.config
        top_k = max(cfg.top_k, LEXICON_BEAM if self.lexicon else 0)
        preds = beam_decode_log_probs(log_probs, lengths, self.alphabet, cfg.beam_width, top_k, self.fusion)
        if self.lexicon is not None:
            preds = [self.lexicon.apply(p, cfg.lexicon_ratio) for p in preds]
        return preds

    def close(self) -> None:
        """End the decoding processes, if any."""
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
