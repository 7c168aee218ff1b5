"""A model's character set is data: named sets, sets taken from the labels, growth when fine-tuning onto new
characters, one label normalisation, imports and corrections checked against the right set, synthetic fields beyond
names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ocr.alphabet import (
    NAMED_CHARSETS,
    Alphabet,
    CharsetError,
    LabelRules,
    named_or_file,
    normalize_label,
    resolve_charset,
    unusable_chars,
)
from ocr.data.datasets import Sample, import_kaggle
from tests.test_datasets import make_layout


def test_auto_takes_the_smallest_named_set_that_holds_the_labels_and_data_takes_the_labels_own():
    assert resolve_charset("auto", ["JEAN-PAUL", "D'ARC"]).chars == NAMED_CHARSETS["names"]
    assert resolve_charset("auto", ["12/03/1998", "06 12 34 56 78", "1 250,50"]).chars == NAMED_CHARSETS["digits"]
    assert resolve_charset("auto", ["Léa", "3 février 1998", "JEAN"]).chars == NAMED_CHARSETS["latin"]
    greek = resolve_charset("auto", ["Ωμέγα"])
    assert greek.chars.startswith(NAMED_CHARSETS["latin"]) and set("Ωμγα") <= set(greek.chars)
    assert resolve_charset("data", ["BAB", "CAB"]).chars == "ABC"
    assert resolve_charset("digits", ["JEAN"]).chars == NAMED_CHARSETS["digits"]  # a named set is taken as asked
    for name, chars in NAMED_CHARSETS.items():
        assert Alphabet(chars).describe().startswith(name) and not unusable_chars(chars)


@pytest.mark.parametrize("content, message", [
    ("", "the character set file is empty"),
    ("ABCA", "characters listed more than once: 'A'"),
    ("AB\x07C", "characters no set allows: '\\x07'"),
    (None, "unknown character set"),
])
def test_a_bad_character_set_gets_one_clear_message(content, message, tmp_path):
    path = tmp_path / "set.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CharsetError, match=message.replace("\\", "\\\\").replace("(", r"\(")):
        named_or_file(str(path))


def test_a_character_set_file_lists_its_characters_line_breaks_ignored(tmp_path):
    path = tmp_path / "set.txt"
    path.write_text("0123\n456789\n /\n", encoding="utf-8")
    assert named_or_file(str(path)).chars == "0123456789 /"
    with pytest.raises(CharsetError, match="no labels"):
        resolve_charset("data", [])
    with pytest.raises(CharsetError, match="no set allows"):
        resolve_charset("auto", ["OK", "BAD\u200b"])


def test_what_no_set_allows():
    assert unusable_chars("A\x00B😀\u200b\tC\u0301") == ["\x00", "😀", "\u200b", "\t", "\u0301"]
    assert unusable_chars("Jérôme 3,50 € 20° 'x' (ß)") == []


def test_one_normalisation_for_imports_corrections_drawings_and_names(tmp_path):
    from db.corrections import validate_label
    from ocr.data.names import to_label

    assert normalize_label("  jean\t  paul\n") == "JEAN PAUL"
    assert normalize_label("Je\u0301ro\u0302me", upper=False) == "Jérôme"  # decomposed accents composed (NFC)
    assert normalize_label("Straße’s", strip_accents=True) == "STRASSE'S"
    assert to_label("Jérôme  Müller") == "JEROME MULLER"
    folder = make_layout(tmp_path, [("A.jpg", "jean  paul "), ("B.jpg", "Léa  Noël")])
    for name in ("A.jpg", "B.jpg"):
        Image.new("RGB", (284, 36), "white").save(folder / name)
    imported = {s.path.name: s.label for s in import_kaggle(tmp_path, rules=LabelRules(charset="latin")).samples}
    assert imported == {"A.jpg": "JEAN PAUL", "B.jpg": "LÉA NOËL"}
    assert validate_label("jean  paul ") == imported["A.jpg"]  # a correction reads double spaces as an import does


def test_import_rules_decide_case_accents_and_which_labels_a_dataset_takes(tmp_path):
    rows = [("A.jpg", "12/03/1998"), ("B.jpg", "Léa"), ("C.jpg", "ANNE"), ("D.jpg", "Bob\x07"), ("E.jpg", "empty")]
    folder = make_layout(tmp_path, rows)
    for name, _ in rows:
        Image.new("RGB", (284, 36), "white").save(folder / name)

    def labels(rules):
        result = import_kaggle(tmp_path, rules=rules)
        return {s.path.name: s.label for s in result.samples}, {e.filename: e.reason for e in result.excluded}

    kaggle, excluded = labels(LabelRules())  # the Kaggle default: upper case, the names set
    assert kaggle == {"C.jpg": "ANNE"}
    assert excluded == {"A.jpg": "bad_chars", "B.jpg": "bad_chars", "D.jpg": "bad_chars", "E.jpg": "empty"}
    assert labels(LabelRules(upper=False, charset="any"))[0] == {"A.jpg": "12/03/1998", "B.jpg": "Léa", "C.jpg": "ANNE",
                                                                 "E.jpg": "empty"}
    assert labels(LabelRules(strip_accents=True))[0] == {"B.jpg": "LEA", "C.jpg": "ANNE"}
    assert labels(LabelRules(charset="digits"))[0] == {"A.jpg": "12/03/1998"}


def test_a_grown_output_layer_reads_as_before(learned, synth_dir):
    from ocr.checkpoint import grow_head, load_checkpoint, model_from_checkpoint
    from ocr.recognize import Recognizer

    ckpt = load_checkpoint(learned[0])
    grown = grow_head(ckpt, Alphabet(ckpt["alphabet"]).grow("9087"))
    assert grown["alphabet"] == ckpt["alphabet"] + "0789" and grown["model_config"]["num_classes"] == 34
    before, _, _ = model_from_checkpoint(ckpt)
    after, alphabet, _ = model_from_checkpoint(grown)
    images = torch.rand(4, 1, 32, 160)
    with torch.no_grad():
        old, new = before(images), after(images)
    assert torch.equal(new[..., :30], old)
    assert new.softmax(-1)[..., 30:].max() < 1e-3  # the new characters start all but impossible
    torch.save(grown, learned[0].parent / "grown.pt")
    rec, plain = Recognizer(learned[0].parent / "grown.pt"), Recognizer(learned[0])
    arrays = [plain.prepare(s.path) for s in import_kaggle(synth_dir).samples[:16]]
    assert [p.text for p in rec.read_prepared(arrays)] == [p.text for p in plain.read_prepared(arrays)]


def test_a_checkpoint_without_a_character_set_is_named_and_refused(learned, tmp_path):
    from ocr.checkpoint import ModelError, load_checkpoint

    ckpt = load_checkpoint(learned[0])
    del ckpt["alphabet"]
    torch.save(ckpt, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["alphabet"] == NAMED_CHARSETS["names"]  # before sets were data
    ckpt["model_config"]["num_classes"] = 12
    torch.save(ckpt, tmp_path / "odd.pt")
    with pytest.raises(ModelError, match="has no character set"):
        load_checkpoint(tmp_path / "odd.pt")


def _digits(tmp_path, n: int) -> list[Sample]:
    from ocr.data.synth import generate

    return import_kaggle(generate(tmp_path / "digits", n, seed=5, kind="numbers"),
                         rules=LabelRules(charset="digits")).samples


def test_fine_tuning_a_names_model_onto_digits_grows_it_learns_them_and_keeps_the_names(learned, synth_dir, tmp_path):
    from ocr.evaluation.metrics import cer
    from ocr.recognize import Recognizer
    from ocr.training.loop import Callback, TrainConfig, fit

    names = import_kaggle(synth_dir).samples[:16]  # some of what ``learned`` memorised
    digits = _digits(tmp_path, 16)
    assert all(not Alphabet(NAMED_CHARSETS["digits"]).invalid_chars(s.label) for s in digits)
    messages = []

    class Listen(Callback):
        def on_message(self, text):
            messages.append(text)

    summary = fit(names + digits, names + digits, tmp_path / "grown", TrainConfig(
        epochs=60, batch_size=8, lr=3e-3, augment=False, log_every=50), init=learned[0], callback=Listen(),
        progress=False)
    added = "".join(sorted({c for s in digits for c in s.label} - set(NAMED_CHARSETS["names"])))
    assert summary["charset_added"] == added and any(f"added {len(added)} character(s)" in m for m in messages)

    def read(checkpoint, samples) -> tuple[float, float]:
        rec = Recognizer(checkpoint)
        texts = [p.text for p in rec.read_prepared([rec.prepare(s.path) for s in samples])]
        return sum(t == s.label for t, s in zip(texts, samples)) / len(samples), cer([s.label for s in samples], texts)

    grown = tmp_path / "grown" / "best.pt"
    assert Recognizer(grown).alphabet.chars == NAMED_CHARSETS["names"] + added
    kept = Recognizer(grown).checkpoint["training_labels"]  # the corpus of its labels LM
    assert sum(kept.values()) == 32 and all(kept.get(s.label) for s in digits)
    assert read(learned[0], digits)[1] > 0.9  # the names model cannot write them
    assert read(grown, digits)[1] < 0.6  # it learns to write the new characters (60 short epochs: 0.1-0.35)
    assert read(grown, names)[0] >= read(learned[0], names)[0] - 0.07  # and has not forgotten the names


def test_a_fine_tune_that_may_not_grow_leaves_those_labels_out_and_says_how_many(learned, synth_dir, tmp_path):
    from ocr.training.loop import Callback, TrainConfig, fit

    names = import_kaggle(synth_dir).samples[:32]
    messages = []

    class Log(Callback):
        def on_message(self, text):
            messages.append(text)

    summary = fit(names + _digits(tmp_path, 8), names, tmp_path / "run", TrainConfig(
        epochs=1, batch_size=16, augment=False, grow_charset=False), init=learned[0], callback=Log(), progress=False)
    assert summary["charset"] == NAMED_CHARSETS["names"] and summary["train_samples"] == 32
    assert any(m.startswith("8 training label(s) with characters outside the model's set") for m in messages)


def test_a_new_model_takes_its_set_from_the_labels(tmp_path):
    from ocr.training.loop import TrainConfig, fit

    digits = _digits(tmp_path, 24)
    summary = fit(digits, digits[:8], tmp_path / "run", TrainConfig(epochs=1, batch_size=8, augment=False),
                  progress=False)
    assert summary["charset"] == NAMED_CHARSETS["digits"]
    data = fit(digits, digits[:8], tmp_path / "data", TrainConfig(epochs=1, batch_size=8, charset="data"),
               progress=False)
    assert data["charset"] == "".join(sorted({c for s in digits for c in s.label}))


@pytest.mark.parametrize("kind, charset", [("dates", "digits"), ("numbers", "digits"), ("words", "latin"),
                                           ("capitals", "latin"), ("mixed", "latin")])
def test_synthetic_fields_of_every_kind(kind, charset, tmp_path):
    from ocr.data.synth import generate

    folder = generate(tmp_path / kind, 40, seed=1, kind=kind)
    samples = import_kaggle(folder, rules=LabelRules(upper=False, charset="any")).samples
    assert len(samples) == 40 and len({s.label for s in samples}) > 30
    assert resolve_charset("auto", [s.label for s in samples]).chars == NAMED_CHARSETS[charset]
    if kind == "words":
        assert any(s.label != s.label.upper() for s in samples) and any(not s.label.isascii() for s in samples)
    if kind == "capitals":  # block capitals, accents kept in the label (a 40-image draw holds a few)
        assert all(s.label == s.label.upper() for s in samples) and any(not s.label.isascii() for s in samples)
    if kind == "mixed":
        labels = [s.label for s in samples]
        assert any(any(c.isdigit() for c in t) for t in labels) and any(t.isalpha() and t.isupper() for t in labels)
    for s in samples[:5]:
        w, h = Image.open(s.path).size
        assert w in (284, 324, 388) and 14 <= h <= 72


def test_corrections_take_new_characters_and_say_so(settings, synth_dir):
    from db import catalog, corrections

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    sid = catalog.training_items(settings, ["synth"])[0].sample_id
    r = corrections.correct_label(settings, sid, "josé 2")
    assert r["label"] == "JOSÉ 2" and r["new_characters"] == "É2"
    other = catalog.training_items(settings, ["synth"])[1].sample_id
    assert corrections.correct_label(settings, other, "2 rue")["new_characters"] == ""  # '2' is in its labels now
    with pytest.raises(corrections.CorrectionError, match="characters no character set allows: '😀'"):
        corrections.correct_label(settings, sid, "ANNE 😀")
    assert corrections.correct_label(settings, sid, "ANNE")["new_characters"] == ""


def test_a_synth_job_of_dates_imports_its_labels_as_written(settings):
    from db import catalog
    from jobs import queue
    from jobs.params import ParamsError
    from jobs.runner import run

    assert run(queue.submit(settings, "synth", {"n": 20, "name": "dates", "kind": "dates", "validation": 0}), "cpu",
               settings) == 0
    labels = [it.label for it in catalog.training_items(settings, ["dates"])]
    assert len(labels) == 20 and all(any(c.isdigit() for c in t) for t in labels)
    with pytest.raises(ParamsError, match="unknown kind 'poems'"):
        queue.submit(settings, "synth", {"n": 20, "name": "x", "kind": "poems"})
    with pytest.raises(ParamsError, match="unknown character set 'klingon'"):
        queue.submit(settings, "import", {"path": "/tmp", "name": "x", "charset": "klingon"})
    with pytest.raises(ParamsError, match="unknown character set 'runes'"):
        queue.submit(settings, "train", {"datasets": ["dates"], "config": {"charset": "runes"}})


def test_the_language_model_follows_the_data():
    from ocr.decoding.decoder import Decoder, DecoderConfig

    digits = Alphabet(NAMED_CHARSETS["digits"])
    labels = {"12/03/1998": 3, "06 12 34 56 78": 2, "ANNE": 1}  # a label the set cannot write is left out
    decoder = Decoder(DecoderConfig(lm="names"), digits, labels)
    assert decoder.lm == "labels" and decoder.fusion.lm.n_words == 5  # the names LM does not fit a digits model
    logits = torch.randn(40, 2, digits.num_classes)
    assert len(decoder(logits, torch.tensor([40, 30]))) == 2
    bare = Decoder(DecoderConfig(lm="names"), digits)  # no training labels in the checkpoint: no LM, still reads
    assert bare.lm is None and bare.fusion is None and len(bare(logits, torch.tensor([40, 30]))) == 2
    assert Decoder(DecoderConfig(lm="labels"), Alphabet(), {"ANNE": 2}).lm == "labels"


def test_a_set_grown_from_names_keeps_the_names_lm_mixed_with_its_labels():
    """A names model fine-tuned onto dates still reads names with the names LM, and its dates with its labels' LM."""
    from ocr.decoding.charlm import CharLM
    from ocr.decoding.decoder import Decoder, DecoderConfig

    grown = Alphabet(NAMED_CHARSETS["names"] + "/0123456789")
    labels = {"12/03/1998": 40, "01/01/2000": 30, "ANNE": 20}
    decoder = Decoder(DecoderConfig(lm="names"), grown, labels)
    assert decoder.lm == "names+labels"
    mixed, names, own = decoder.fusion.lm, CharLM.names(grown), CharLM(list(labels), grown)
    assert abs(np.exp(mixed.log_probs("GUI")[1:]).sum() - 1) < 1e-6  # a distribution over the set and the end
    assert mixed.score("GUILLAUME") > mixed.score("GUILLAURE") + 2  # what the names LM knows
    assert mixed.score("GUILLAUME") > own.score("GUILLAUME") + 5
    assert mixed.score("14/07/1989") > names.score("14/07/1989") + 10  # what the labels know
    assert mixed.score("14/07/1989") > mixed.score("14/O7/1989") + 2
    logits = torch.randn(40, 2, grown.num_classes)
    assert len(decoder(logits, torch.tensor([40, 30]))) == 2
    assert Decoder(DecoderConfig(lm="names"), grown).lm is None  # no labels kept: as before, no LM


def test_a_label_the_model_cannot_write_scores_as_impossible_instead_of_failing(learned, synth_dir):
    """Corrections may add characters a model lacks; scoring such a label (label errors, predict jobs) must not fail."""
    from ocr.recognize import LOG_FLOOR, Recognizer

    rec = Recognizer(learned[0])
    arrays = [rec.prepare(s.path) for s in import_kaggle(synth_dir).samples[:3]]
    readings = rec.score(arrays, ["JOSÉ 2", None, "ANNE"])
    assert readings[0].label_log_prob == LOG_FLOOR and readings[1].label_log_prob is None
    assert LOG_FLOOR < readings[2].label_log_prob < 0


def test_the_label_error_score_counts_the_language_model_on_both_sides(learned, synth_dir):
    """With the names LM, a label is doubted by how much more the model and the LM together prefer the reading: a
    label that is no name (one letter made Q) is doubted more than the model alone doubts it; greedy has no LM term."""
    from ocr.decoding.decoder import DecoderConfig
    from ocr.recognize import Recognizer

    rec = Recognizer(learned[0])
    samples = import_kaggle(synth_dir).samples[:4]
    arrays = [rec.prepare(s.path) for s in samples]
    odd = [s.label[:-1] + "Q" for s in samples]  # names do not end in Q
    lm = rec.decoder(DecoderConfig(lm="names"))
    greedy, fused = rec.score(arrays, odd), rec.score(arrays, odd, lm)
    assert all(r.prior == 0 and r.label_prior == 0 for r in greedy)
    for r, label in zip(fused, odd):
        assert r.label_prior == pytest.approx(lm.fusion.score(label)) and r.prior == pytest.approx(lm.fusion.score(r.text))
        assert r.label_error_score == pytest.approx(max(0.0, r.log_prob + r.prior - r.label_log_prob - r.label_prior))
    doubted = [(g.label_error_score, f.label_error_score) for g, f, label in zip(greedy, fused, odd)
               if label not in (g.text, f.text)]
    assert len(doubted) >= 3 and all(f > g for g, f in doubted), doubted
