import math
import subprocess

import numpy as np
import pytest
import torch

from ocr.alphabet import BLANK, Alphabet
from ocr.decoding.charlm import CharLM
from ocr.decoding.ctc import beam_decode
from ocr.decoding.types import Fusion
from tests.conftest import PY, ROOT

A = Alphabet()
NAMES = ["JULIE", "JULIEN", "JULES", "JULIETTE", "LUCIE", "LUCIEN", "MARIE", "MARIUS", "JULIA", "ELISE", "ALICE"]


def test_kneser_ney_gives_a_distribution_for_any_context():
    lm = CharLM(NAMES, A, order=4)
    for context in ("", "J", "JUL", "JULIE", "ZZQ", "MARIE-", "XJULI"):
        lp = lm.log_probs(context)
        assert lp.shape == (A.num_classes + 1,) and lp[BLANK] == -math.inf
        assert np.exp(lp[1:]).sum() == pytest.approx(1.0, abs=1e-9)
        assert np.isfinite(lp[1:]).all()  # nothing is impossible: open vocabulary
    assert lm.score("JULIE") > lm.score("JUCIE") > lm.score("QXZKW")
    after_julie = lm.log_probs("JULIE")
    assert after_julie[lm.end_index] > after_julie[A.encode("Z")[0]]  # a name may end here


def test_kneser_ney_matches_the_textbook_figures_of_a_tiny_corpus():
    # AB, AB, B with order 2. Bigrams: ^A 2, AB 2, B$ 3, ^B 1 (n1 = 1, n2 = 2: discount 0.2); unigram continuation
    # counts A 1, B 2, $ 1 (n1 = 2, n2 = 1: discount 0.5), so P1 = (c - 0.5) / 4 + 0.5 * 3/4 * 1/3 = .25, .5, .25;
    # P(B | A) = (2 - 0.2) / 2 + 0.2 * 1/2 * P1(B) = 0.95; P(A | ^) = 1.8 / 3 + 0.2 * 2/3 * P1(A) = 0.6333...
    ab = Alphabet("AB")
    lm = CharLM(["AB", "AB", "B"], ab, order=2)
    assert np.exp(lm.log_probs("A")[1:]) == pytest.approx([0.025, 0.95, 0.025], abs=1e-12)
    assert np.exp(lm.log_probs("")[1:]) == pytest.approx([0.6 + 0.2 / 3 * 0.5, 0.8 / 3 + 0.4 / 3 * 0.5, 0.4 / 3 * 0.25],
                                                          abs=1e-12)


def test_words_outside_the_alphabet_are_skipped_and_an_empty_list_refused():
    lm = CharLM(["JULIE", "julie", "JUL1E", ""], A, order=3)
    assert lm.n_words == 1
    with pytest.raises(ValueError, match="no usable word"):
        CharLM(["123"], A)


def _logits(steps: list[dict[str, float]]) -> torch.Tensor:
    """One image: per time step a few characters with their probabilities, the rest for the blank."""
    rows = []
    for step in steps:
        p = np.full(A.num_classes, 1e-6)
        for ch, q in step.items():
            p[BLANK if ch == "" else A.encode(ch)[0]] = q
        p[BLANK] += max(0.0, 1 - p.sum())
        rows.append(np.log(p / p.sum()))
    return torch.tensor(np.array(rows), dtype=torch.float32)[:, None, :]  # T, N=1, C


def _spell(text: str, ambiguous: dict[int, dict[str, float]] | None = None) -> list[dict[str, float]]:
    steps = []
    for i, ch in enumerate(text):
        steps += [ambiguous[i] if ambiguous and i in ambiguous else {ch: 0.95}, {"": 0.95}]
    return steps


def test_fusion_settles_what_the_image_leaves_open_and_keeps_open_vocabulary():
    lm = CharLM(NAMES, A, order=5)
    logits = _logits(_spell("JUCIE", {2: {"C": 0.55, "L": 0.43}}))
    lengths = torch.tensor([logits.shape[0]])
    plain = beam_decode(logits, lengths, A, beam=10)[0]
    assert plain.text == "JUCIE"
    fused = beam_decode(logits, lengths, A, beam=10, fusion=Fusion(lm, weight=0.6))[0]
    assert fused.text == "JULIE"
    assert fused.confidence == pytest.approx(dict(plain.candidates)["JULIE"])  # still P(text | image)
    assert beam_decode(logits, lengths, A, beam=10, fusion=Fusion(lm, 0.0, 0.0))[0] == plain

    # a clearly written name the model of names never saw is still read letter by letter
    unknown = _logits(_spell("KOWALCZYK"))
    assert beam_decode(unknown, torch.tensor([unknown.shape[0]]), A, fusion=Fusion(lm))[0].text == "KOWALCZYK"


def test_the_names_model_prefers_real_spellings():
    lm = CharLM.names(A)
    assert lm.order >= 5 and lm.n_words > 100_000
    assert lm.score("GUILLAUME") > lm.score("GUILLAURE") + 5
    assert lm.score("MARIE") > lm.score("MARIEM")  # frequency counts, not only the list of names
    assert CharLM.names(A).score("JULIE") == lm.score("JULIE")  # from the cache


def test_predict_and_evaluate_with_the_language_model_from_the_command_line(trained, synth_dir, tmp_path):
    image = next((synth_dir / "train_v2" / "train").glob("*.jpg"))
    words = tmp_path / "w.txt"
    words.write_text("MARIE\nJULIE\n", encoding="utf-8")
    ok = subprocess.run([PY, "-m", "ocr", "predict", "--checkpoint", str(trained), str(image), "--lm", str(words),
                         "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert str(image) in ok.stdout and '"candidates"' in ok.stdout
    out = tmp_path / "eval"
    from ocr.data.synth import generate

    small = generate(tmp_path / "small", 24, seed=3)  # a beam with a language model over 24 images, not 200
    ev = subprocess.run([PY, "-m", "ocr", "evaluate", "--checkpoint", str(trained), "--data", str(small),
                         "--split", "train", "--out", str(out), "--lm", "names", "--views", "3", "--json"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    assert '"decoder": "beam20+names LM+3 views"' in ev.stdout and (out / "report.pdf").exists()  # the jobs' name
    assert '"views": 3' in ev.stdout  # the config is recorded with the figures
    bad = subprocess.run([PY, "-m", "ocr", "predict", "--checkpoint", str(trained), str(image), "--views", "9"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr == "error: views=9 must be between 1 (the image as it is) and 7\n"
    bad = subprocess.run([PY, "-m", "ocr", "predict", "--checkpoint", str(trained), str(image), "--lm",
                          str(tmp_path / "missing.txt")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "language model" in bad.stderr
