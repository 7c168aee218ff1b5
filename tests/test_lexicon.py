import subprocess

import pytest

from ocr.decoding.lexicon import Lexicon
from ocr.decoding.types import Prediction
from tests.conftest import PY, ROOT


def test_a_known_name_among_the_candidates_replaces_the_best_reading(tmp_path):
    words = tmp_path / "names.txt"
    words.write_text("Michel\nJérémy\nle gall\n1234\n", encoding="utf-8")
    lex = Lexicon.from_file(words)
    assert {"MICHEL", "JEREMY", "LE GALL"} == set(lex.words)  # transliterated, digits skipped
    pred = Prediction("MIGHEL", 0.6, (("MIGHEL", 0.6), ("MICHEL", 0.3), ("NICHEL", 0.05)))
    assert lex.apply(pred) == Prediction("MICHEL", 0.3, pred.candidates)
    assert lex.apply(pred, min_ratio=0.9).text == "MIGHEL"  # not probable enough against the best reading
    rare = Prediction("ZORGLUB", 0.9, (("ZORGLUB", 0.9), ("ZORGLOB", 0.05)))
    assert lex.apply(rare) is rare  # open vocabulary when no candidate is a known name
    assert lex.apply(Prediction("MIGHEL", 0.6)).text == "MIGHEL"  # greedy predictions have no candidates


def test_bad_lexicon_files_are_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("123\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no usable word"):
        Lexicon.from_file(empty)


def test_predict_with_a_lexicon_from_the_command_line(trained, synth_dir, tmp_path):
    image = next((synth_dir / "train_v2" / "train").glob("*.jpg"))
    words = tmp_path / "w.txt"
    words.write_text("MARIE\n", encoding="utf-8")
    ok = subprocess.run([PY, "-m", "ocr", "predict", "--checkpoint", str(trained), str(image), "--lexicon", str(words)],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and str(image) in ok.stdout
    bad = subprocess.run([PY, "-m", "ocr", "predict", "--checkpoint", str(trained), str(image), "--lexicon",
                          str(tmp_path / "missing.txt")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "lexicon" in bad.stderr
