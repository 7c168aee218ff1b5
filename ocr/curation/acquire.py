"""Which unlabelled images to label next (active learning): the ones the model is least sure of, spread out so that
one batch is not twenty crops of the same name or the same kind of smudge.

Uncertainty is ``1 - margin``, the margin being P(reading) - P(runner-up) under the model alone (best-versus-second-best
sampling for sequences; it is at most P(reading), so a reading the model gives little probability is uncertain too, and
a reading the language model chose against the model's own preference has a negative margin). Without a runner-up
(greedy decoding) it falls back to ``1 - P(reading)``.

Diversity is greedy: in uncertainty order an image joins the batch unless its reading is within
``text_distance`` edits of one already in it, or its embedding (``Recognizer.outputs``), centred on the pool's mean,
has a cosine of at least ``image_similarity`` with one in it; those wait at the end of the batch. (Raw embeddings of
any two crops have a cosine of ~0.96, all being form fields of names; centred, the median pool pair is at 0 and 1 % of
pairs reach 0.75 on the real Kaggle sample.) The Label next page
(``db.review.label_queue``) and ``bench/label_value.py`` use this one ordering.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

TEXT_DISTANCE = 1
IMAGE_SIMILARITY = 0.8  # cosine of two centred embeddings
MIN_TEXT = 3  # shorter readings are too often alike by chance to call two images the same


@dataclass(frozen=True)
class PoolImage:
    """An unlabelled image as the acquisition sees it: the model's reading and how sure it is."""

    key: Hashable  # a sample id, a path
    text: str
    confidence: float  # P(reading | image), model alone
    margin: float | None = None  # P(reading) - P(runner-up), model alone
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def uncertainty(self) -> float:
        return 1.0 - (self.margin if self.margin is not None else self.confidence)


def acquisition_order(pool: Sequence[PoolImage], size: int, text_distance: int = TEXT_DISTANCE,
                      image_similarity: float | None = IMAGE_SIMILARITY) -> list[PoolImage]:
    """The ``size`` images to label next, in order: most uncertain first, near-duplicates of an already chosen image
    pushed to the end (``image_similarity`` None: by reading only)."""
    import editdistance

    ranked = sorted(pool, key=lambda p: -p.uncertainty)
    embedded = [p.embedding for p in pool if p.embedding is not None]
    centre = np.mean(embedded, axis=0) if len(embedded) > 1 and image_similarity is not None else None
    picked: list[PoolImage] = []
    later: list[PoolImage] = []
    vectors: list[np.ndarray] = []
    for item in ranked:
        near = len(item.text) >= MIN_TEXT and any(
            len(p.text) >= MIN_TEXT and editdistance.eval(item.text, p.text) <= text_distance for p in picked)
        vector = None
        if centre is not None and item.embedding is not None:
            vector = item.embedding - centre
            vector /= max(float(np.linalg.norm(vector)), 1e-8)
            near = near or (bool(vectors) and float(np.max(np.stack(vectors) @ vector)) >= image_similarity)
        if near:
            later.append(item)
            continue
        picked.append(item)
        if vector is not None:
            vectors.append(vector)
        if len(picked) == size:
            break
    return (picked + later)[:size]


__all__ = ["IMAGE_SIMILARITY", "PoolImage", "acquisition_order"]
