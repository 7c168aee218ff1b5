import pytest

from ocr.alphabet import BLANK, Alphabet


def test_round_trip_every_character():
    a = Alphabet()
    text = "JEAN-BAPTISTE D'ALMEIDA " + a.chars
    assert a.decode(a.encode(text)) == text
    assert BLANK not in a.encode(text)
    assert a.num_classes == len(a.chars) + 1


def test_outside_characters_are_reported_not_mangled():
    a = Alphabet()
    assert a.invalid_chars("JÉRÔME2É") == ["É", "Ô", "2"]
    with pytest.raises(ValueError, match="outside the alphabet"):
        a.encode("Jérôme")


def test_duplicate_characters_refused():
    with pytest.raises(ValueError):
        Alphabet("ABA")
