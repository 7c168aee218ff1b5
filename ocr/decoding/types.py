"""What the decoders, language models and lexicons pass to each other, kept apart so none of them imports another's
module for a type (charlm -> lexicon -> ctc would otherwise close a circle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

DEFAULT_WEIGHT = 0.6  # log P_lm's weight in the beam (``Fusion``); chosen on real held-out names
VIEW_OFFSETS = (0, 1, -1, 2, -2, 3, -3)  # rows of the model's input each view moves the image by (DecoderConfig.views)


def views_allowed(views: int) -> bool:
    """The one range rule of a number of views (``DecoderConfig.views``, ``TrainConfig.pseudo_views``)."""
    return 1 <= views <= len(VIEW_OFFSETS)


class LanguageModel(Protocol):
    """A character model the beam asks for log P(next character | text so far), end of text at ``end_index``."""

    end_index: int

    def log_probs(self, text: str) -> np.ndarray: ...

    def score(self, text: str) -> float: ...


@dataclass(frozen=True)
class Fusion:
    """A character language model for beam search and how much it counts (see ``ocr.decoding.charlm``)."""

    lm: LanguageModel
    weight: float = DEFAULT_WEIGHT
    length_bonus: float = 1.0

    def score(self, text: str) -> float:
        """What the beam adds to a whole text's log P(text | image): weight * log P_lm(text, then its end) +
        length_bonus * its length. Added to both sides, it turns "the model reads another text" into "the model and
        the language model together prefer another text" (``ocr.recognize.Reading.label_error_score``)."""
        return self.weight * self.lm.score(text) + self.length_bonus * len(text)


@dataclass(frozen=True)
class Prediction:
    text: str
    confidence: float
    candidates: tuple[tuple[str, float], ...] = ()  # top-k (text, probability), beam search only
