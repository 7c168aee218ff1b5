"""CTC decoding: logits -> text with a confidence.

Confidence is a probability of the text given the image: for greedy decoding the probability of
the best path, for beam search the summed probability of every path that collapses to the text
(what CTC defines as P(text | image)), as far as the beam saw them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ocr.alphabet import BLANK, Alphabet
from ocr.decoding.types import Fusion, Prediction


def log_softmax(logits: torch.Tensor) -> np.ndarray:
    """logits (T, N, C) -> log probabilities over C, in numpy: decoding runs no torch kernel, whose idle OpenMP
    threads would spin against onnxruntime's (``ocr.engines``) on a small machine (a drawing read in 1 ms, not 2-16)."""
    x = logits.detach().float().cpu().numpy()
    shifted = x - x.max(axis=2, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor, alphabet: Alphabet) -> list[Prediction]:
    """logits (T, N, C), lengths (N,) -> N predictions: best class per step, repeats and blanks removed."""
    log_probs = log_softmax(logits)
    best = log_probs.argmax(2)  # T, N
    best_lp = np.take_along_axis(log_probs, best[..., None], 2)[..., 0].T
    best = best.T
    out = []
    for i, n in enumerate(lengths.tolist()):
        path = best[i, :n]
        keep = np.ones(n, dtype=bool)
        keep[1:] = path[1:] != path[:-1]
        keep &= path != BLANK
        out.append(Prediction(alphabet.decode(path[keep].tolist()), float(math.exp(best_lp[i, :n].sum()))))
    return out


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def beam_decode_one(log_probs: np.ndarray, alphabet: Alphabet, beam: int = 10, top_k: int = 5,
                    prune: float = -12.0, fusion: Fusion | None = None, max_classes: int = 20) -> Prediction:
    """CTC prefix beam search over one sequence. log_probs (T, C) -> best text + top-k candidates.

    Only the ``max_classes`` likeliest classes above ``prune`` (log probability) are extended at each step, which keeps
    it fast even for a model early in training whose outputs are nearly flat. With ``fusion`` each
    prefix is ranked by log P_ctc + weight * log P_lm + length_bonus * length (shallow fusion, Hannun et al. 2014);
    the probabilities reported stay the model's P(text | image). Each step scores every (prefix, class) pair at once
    in numpy; Python touches only the prefixes kept.
    """
    search = _Beams(alphabet, fusion)
    for t in range(log_probs.shape[0]):
        search.step(log_probs[t], _classes(log_probs[t], prune, max_classes), beam)
    return search.result(top_k)


def _classes(row: np.ndarray, prune: float, max_classes: int) -> np.ndarray:
    """The classes a step extends: above ``prune``, at most ``max_classes`` of them, the likeliest."""
    classes = np.nonzero(row > prune)[0]
    if len(classes) > max_classes:
        classes = classes[np.argpartition(row[classes], -max_classes)[-max_classes:]]
    return classes


class _Beams:
    """The beam between two steps: prefixes with log P(prefix, ending in a blank), log P(..., ending in a character)
    and the language model's score of the prefix (weight * log P_lm + length bonus)."""

    def __init__(self, alphabet: Alphabet, fusion: Fusion | None):
        self.alphabet, self.fusion = alphabet, fusion
        self.prefixes: list[tuple[int, ...]] = [()]
        self.last = np.full(1, -1)  # each prefix's last class, -1 for the empty one
        self.pb, self.pnb, self.lm = np.zeros(1), np.full(1, -math.inf), np.zeros(1)
        self._rows: dict[tuple[int, ...], np.ndarray] = {}

    def lm_row(self, prefix: tuple[int, ...]) -> np.ndarray:
        """weight * log P_lm(next symbol | prefix) for every class, the end symbol last."""
        row = self._rows.get(prefix)
        if row is None:
            lp = self.fusion.lm.log_probs(self.alphabet.decode(list(prefix)))
            row = self._rows[prefix] = self.fusion.weight * lp if self.fusion.weight else np.zeros_like(lp)
        return row

    def step(self, row: np.ndarray, classes: np.ndarray, beam: int) -> None:
        total = np.logaddexp(self.pb, self.pnb)
        chars = classes[classes != BLANK]
        if len(chars) == 0:  # a blank alone: every prefix stays, ending in a blank
            self.pb, self.pnb = total + row[BLANK], np.full(len(total), -math.inf)
            return
        n, last, p = len(self.prefixes), self.last, row[chars]
        blank = len(chars) < len(classes)
        # staying: the prefix read again, through a blank or a repeat of its last character
        stay_b = total + row[BLANK] if blank else np.full(n, -math.inf)
        repeat = last[:, None] == chars[None, :]
        stay_nb = np.where(repeat, self.pnb[:, None] + p[None, :], -math.inf).max(axis=1, initial=-math.inf)
        # extending by each character; a repeat needs a blank in between
        ext = np.where(repeat, self.pb[:, None], total[:, None]) + p[None, :]
        ext_lm = self._extension_lm(chars)
        self._merge_children(chars, ext, stay_b, stay_nb)
        self._keep(chars, ext, ext_lm, stay_b, stay_nb, beam)

    def _extension_lm(self, chars: np.ndarray) -> np.ndarray:
        if self.fusion is None:
            return np.zeros((len(self.prefixes), len(chars)))
        rows = np.stack([self.lm_row(prefix)[chars] for prefix in self.prefixes])
        return self.lm[:, None] + rows + self.fusion.length_bonus

    def _merge_children(self, chars: np.ndarray, ext: np.ndarray, stay_b: np.ndarray, stay_nb: np.ndarray) -> None:
        """A prefix of the beam that extends another one by a class of this step: both paths reach it, so the
        extension's probability joins its stay, and the extension is dropped."""
        index = {prefix: i for i, prefix in enumerate(self.prefixes)}
        where = {int(c): j for j, c in enumerate(chars.tolist())}
        for i, prefix in enumerate(self.prefixes):
            parent = index.get(prefix[:-1]) if prefix else None
            j = where.get(prefix[-1]) if parent is not None else None
            if j is not None:
                stay_nb[i] = np.logaddexp(stay_nb[i], ext[parent, j])
                ext[parent, j] = -math.inf

    def _keep(self, chars: np.ndarray, ext: np.ndarray, ext_lm: np.ndarray, stay_b: np.ndarray,
              stay_nb: np.ndarray, beam: int) -> None:
        n = len(self.prefixes)
        p_all = np.concatenate([np.logaddexp(stay_b, stay_nb), ext.ravel()])
        key = p_all + np.concatenate([self.lm, ext_lm.ravel()])
        order = np.argsort(-key, kind="stable")[:beam]
        order = order[np.isfinite(p_all[order])]
        stays, parent, char = order < n, (order - n) // len(chars), chars[(order - n) % len(chars)]
        self.pb = np.where(stays, stay_b[np.minimum(order, n - 1)], -math.inf)
        self.pnb = np.where(stays, stay_nb[np.minimum(order, n - 1)], p_all[order])
        self.lm = np.concatenate([self.lm, ext_lm.ravel()])[order]
        self.last = np.where(stays, self.last[np.minimum(order, n - 1)], char)
        self.prefixes = [self.prefixes[k] if s else self.prefixes[a] + (c,)
                         for k, s, a, c in zip(order.tolist(), stays.tolist(), parent.tolist(), char.tolist())]

    def result(self, top_k: int) -> Prediction:
        total = np.logaddexp(self.pb, self.pnb)
        key = total.copy()
        if self.fusion is not None:
            end = self.fusion.lm.end_index
            key += self.lm + np.array([self.lm_row(prefix)[end] for prefix in self.prefixes])
        order = np.argsort(-key, kind="stable")
        ranked = [(self.alphabet.decode(list(self.prefixes[i])), math.exp(total[i])) for i in order.tolist()]
        return Prediction(ranked[0][0], ranked[0][1], tuple(ranked[:top_k]))


def beam_decode(logits: torch.Tensor, lengths: torch.Tensor, alphabet: Alphabet, beam: int = 10,
                top_k: int = 5, fusion: Fusion | None = None) -> list[Prediction]:
    """logits (T, N, C), lengths (N,) -> N predictions with top-k candidates."""
    return beam_decode_log_probs(log_softmax(logits), lengths.tolist(), alphabet, beam, top_k, fusion)


def beam_decode_log_probs(log_probs: np.ndarray, lengths: list[int], alphabet: Alphabet, beam: int = 10,
                          top_k: int = 5, fusion: Fusion | None = None) -> list[Prediction]:
    """``beam_decode`` of log probabilities already in numpy (T, N, C): what a decoding process receives."""
    return [beam_decode_one(log_probs[:n, i], alphabet, beam, top_k, fusion=fusion) for i, n in enumerate(lengths)]


def label_log_prob(logits: torch.Tensor, lengths: torch.Tensor, labels: list[str], alphabet: Alphabet) -> torch.Tensor:
    """log P(label | image) under the model for each given label: (N,). -inf when the label cannot fit."""
    log_probs = logits.float().log_softmax(2)
    encoded = [alphabet.encode(s) for s in labels]
    targets = torch.tensor([c for e in encoded for c in e], dtype=torch.long)
    target_lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
    nll = F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=BLANK, reduction="none", zero_infinity=False)
    return -nll


def ctc_min_length(label: str) -> int:
    """Time steps CTC needs for ``label``: one per character plus a blank between each repeated pair."""
    return len(label) + sum(1 for a, b in zip(label, label[1:]) if a == b)
