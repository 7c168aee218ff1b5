import pytest

from ocr.evaluation.metrics import accuracy_by_length, cer, char_accuracy, confusions, exact_match, summarize, wer


def test_known_values():
    labels = ["MARTIN", "LEA", "JEAN PAUL"]
    preds = ["MARTIN", "LEO", "JEAN-PAUL"]
    assert exact_match(labels, preds) == pytest.approx(1 / 3)
    assert cer(labels, preds) == pytest.approx(2 / 18)  # sums of distances over sums of lengths
    assert wer(labels, preds) == pytest.approx((0 + 1 + 2) / 4)
    assert char_accuracy("LEA", "LEO") == pytest.approx(2 * 2 / 6)
    s = summarize(labels, preds)
    assert s["n"] == 3 and s["mean_edit_distance"] == pytest.approx(2 / 3)


def test_by_length_and_confusions():
    labels = ["LEA", "LEO", "MARTIN"]
    preds = ["LEA", "LEA", "MARTN"]
    assert accuracy_by_length(labels, preds) == {3: {"n": 2, "exact_match": 0.5}, 6: {"n": 1, "exact_match": 0.0}}
    assert confusions(labels, preds) == [("O", "A", 1), ("I", "", 1)]
