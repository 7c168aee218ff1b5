import math

import numpy as np
import pytest
import torch

from ocr.alphabet import Alphabet
from ocr.decoding.ctc import beam_decode, ctc_min_length, greedy_decode, label_log_prob

A = Alphabet("AB")  # classes: 0 blank, 1 A, 2 B


def logits_from_probs(rows):
    """(T, C) probabilities -> logits (T, 1, C) whose softmax gives them back."""
    return torch.log(torch.tensor(rows, dtype=torch.float32)).unsqueeze(1)


def test_greedy_collapses_repeats_and_drops_blanks():
    rows = [[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    p = greedy_decode(logits_from_probs(rows), torch.tensor([5]), A)[0]
    assert p.text == "AAB"
    assert math.isclose(p.confidence, 0.8**5, rel_tol=1e-5)  # probability of the best path


def test_greedy_respects_lengths():
    rows = [[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    assert greedy_decode(logits_from_probs(rows), torch.tensor([1]), A)[0].text == "A"


def test_beam_finds_the_likelier_text_greedy_misses():
    # best path is blank-blank (""), but "A" collects 0.4*0.6 + 0.6*0.4 + 0.4*0.4 = 0.64 over its paths
    rows = [[0.6, 0.4, 0.0001], [0.6, 0.4, 0.0001]]
    logits = logits_from_probs(rows)
    assert greedy_decode(logits, torch.tensor([2]), A)[0].text == ""
    p = beam_decode(logits, torch.tensor([2]), A, beam=5)[0]
    assert p.text == "A"
    assert math.isclose(p.confidence, 0.64, rel_tol=1e-3)
    texts = [t for t, _ in p.candidates]
    assert texts[:2] == ["A", ""] and math.isclose(dict(p.candidates)[""], 0.36, rel_tol=1e-3)


def test_beam_probability_equals_ctc_label_probability():
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.ones(3), size=6)
    logits = logits_from_probs(rows.tolist())
    p = beam_decode(logits, torch.tensor([6]), A, beam=50, top_k=50)[0]
    for text, prob in p.candidates[:5]:
        if text:
            assert math.isclose(prob, float(label_log_prob(logits, torch.tensor([6]), [text], A).exp()), rel_tol=1e-4)


def test_ctc_min_length_counts_repeats():
    assert ctc_min_length("ANNE") == 5
    assert ctc_min_length("LEA") == 3


def test_a_beam_decoded_on_two_processes_reads_as_in_one_and_its_processes_end(tmp_path):
    import multiprocessing
    import os

    from ocr.decoding.decoder import Decoder, DecoderConfig

    words = tmp_path / "words.txt"
    words.write_text("AB\nBA\nABBA\nBAB\n")
    config = DecoderConfig(lm=str(words))
    rng = np.random.default_rng(1)
    logits = torch.log(torch.tensor(rng.dirichlet(np.ones(3) * 0.5, size=(12, 40)), dtype=torch.float32))
    lengths = torch.tensor(rng.integers(4, 13, size=40))
    alone = Decoder(config, A)(logits, lengths)
    with Decoder(config, A, processes=2) as pooled:
        assert pooled(logits, lengths) == alone  # texts, confidences and candidates, in order
        workers = [w.pid for w in multiprocessing.active_children()]
        assert len(workers) == 2
    assert not multiprocessing.active_children()
    for pid in workers:  # ended and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
