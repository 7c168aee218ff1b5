"""The reviewed labels the label-error benchmark measures on (bench/data/reviewed_labels.csv) stay true to the shared
sample: one verdict per usable row, on the label the sample has, and the natural errors sort into their kinds."""

from __future__ import annotations

from dataclasses import replace

from bench.label_errors import natural, natural_kind
from bench.reviewed import corrected, reviews, verdict, wrong
from ocr.data.datasets import import_kaggle


def test_every_usable_real_row_has_one_verdict_on_its_own_label(real_data):
    samples = import_kaggle(real_data, ("validation",)).samples
    seen = reviews()
    assert sorted(seen) == sorted(s.path.name for s in samples)
    assert all(seen[s.path.name].label == s.label for s in samples)
    fix = wrong(samples)
    assert 40 <= len(fix) <= 70 and all(right != seen[p.name].label for p, right in fix.items())
    fixed = corrected(samples)
    assert sum(a.label != b.label for a, b in zip(samples, fixed)) == len(fix)
    assert {verdict(s) for s in fixed if s.path in fix} == {"unreviewed"}  # a changed label is no longer the reviewed one


def test_natural_errors_are_the_wrong_labels_with_their_kind(real_data):
    samples = import_kaggle(real_data, ("validation",)).samples
    same, found = natural(samples)
    assert same == samples and set(found) == set(wrong(samples))
    first = next(s for s in samples if s.path in found)
    assert found[first.path][1] == first.label and found[first.path][0] != first.label
    assert natural([replace(first, label=found[first.path][0])])[1] == {}  # set right, nothing to find


def test_the_kinds_of_natural_error():
    assert natural_kind("PAYET LABONNE", "PAYET-LABONNE") == "hyphen or space"
    assert natural_kind("MARIE - ASTRIDE", "MARIE-ASTRIDE") == "hyphen or space"
    assert natural_kind("DHONDT", "D'HONDT") == "hyphen or space"
    assert natural_kind("SAMES", "JAMES") == "one letter"
    assert natural_kind("MOINET-LOMBOSO", "MOINET-LOMBROSO") == "dropped letter"
    assert natural_kind("GRUSSON", "GRUSON") == "added letter"
    assert natural_kind("LOPEZ", "PAULIN") == "two or more letters"
