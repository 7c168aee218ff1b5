"""CTC decoding: logits -> text with a confidence.

Confidence is a probability of the text given the image: for greedy decoding the probability of
the best path, for beam search the summed probability of every path that collapses to the text
(what CTC defines as P(text | image)), as far as the beam saw them.
"""

from __future__ import annotations

import math
from collections import defaultdict

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
    the probabilities reported stay the model's P(text | image).
    """
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (log p_blank, log p_nonblank)
    lm_score: dict[tuple[int, ...], float] = {(): 0.0}  # weight * log P_lm(prefix), bonus included
    lm_rows: dict[tuple[int, ...], np.ndarray] = {}

    def lm_row(prefix: tuple[int, ...]) -> np.ndarray:
        row = lm_rows.get(prefix)
        if row is None:
            lp = fusion.lm.log_probs(alphabet.decode(list(prefix)))
            row = lm_rows[prefix] = fusion.weight * lp if fusion.weight else np.zeros_like(lp)
        return row

    for t in range(log_probs.shape[0]):
        row = log_probs[t]
        classes = np.nonzero(row > prune)[0]
        if len(classes) > max_classes:
            classes = classes[np.argpartition(row[classes], -max_classes)[-max_classes:]]
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (pb, pnb) in beams.items():
            total = _logsumexp(pb, pnb)
            for c in classes.tolist():
                p = float(row[c])
                if c == BLANK:
                    e = nxt[prefix]
                    e[0] = _logsumexp(e[0], total + p)
                    continue
                last = prefix[-1] if prefix else None
                ext = prefix + (c,)
                if fusion is not None and ext not in lm_score:
                    lm_score[ext] = lm_score[prefix] + float(lm_row(prefix)[c]) + fusion.length_bonus
                e = nxt[ext]
                if c == last:
                    e[1] = _logsumexp(e[1], pb + p)  # a repeat needs a blank in between
                    s = nxt[prefix]
                    s[1] = _logsumexp(s[1], pnb + p)
                else:
                    e[1] = _logsumexp(e[1], total + p)
        if fusion is None:
            scored = sorted(nxt.items(), key=lambda kv: _logsumexp(*kv[1]), reverse=True)[:beam]
        else:
            scored = sorted(nxt.items(), key=lambda kv: _logsumexp(*kv[1]) + lm_score[kv[0]], reverse=True)[:beam]
        beams = {k: (v[0], v[1]) for k, v in scored}
    if fusion is None:
        order = sorted(beams.items(), key=lambda kv: _logsumexp(*kv[1]), reverse=True)
    else:
        end = fusion.lm.end_index
        order = sorted(beams.items(), key=lambda kv: _logsumexp(*kv[1]) + lm_score[kv[0]] + float(lm_row(kv[0])[end]),
                       reverse=True)
    ranked = [(alphabet.decode(list(k)), math.exp(_logsumexp(*v))) for k, v in order]
    best_text, best_p = ranked[0]
    return Prediction(best_text, best_p, tuple(ranked[:top_k]))


def beam_decode(logits: torch.Tensor, lengths: torch.Tensor, alphabet: Alphabet, beam: int = 10,
                top_k: int = 5, fusion: Fusion | None = None) -> list[Prediction]:
    """logits (T, N, C), lengths (N,) -> N predictions with top-k candidates."""
    log_probs = log_softmax(logits)
    return [beam_decode_one(log_probs[:n, i], alphabet, beam, top_k, fusion=fusion)
            for i, n in enumerate(lengths.tolist())]


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
