"""Label errors found out of fold: wrong labels planted in real training data come out on top, the scores are stored
with their evidence for Review, and a search that cannot work is refused before anything is written."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from ocr.curation.label_errors import LabelErrorConfig, LabelIssue, find_label_errors, folds_of, mark_hard, rank
from ocr.data.datasets import Sample, import_kaggle
from ocr.training.loop import TrainingError

QUICK = LabelErrorConfig(folds=2, max_minutes=None, epochs=1, lr=1e-4, device="cpu")


def _planted(samples, n: int = 6):
    """The first ``n`` labels swapped for the labels of samples further on (another real name of the data)."""
    donors = samples[-n:]
    wrong = [replace(s, label=d.label) for s, d in zip(samples[:n], donors) if d.label != s.label]
    return wrong + samples[len(wrong):-n], {s.path for s in wrong}


def test_planted_label_errors_rank_first_out_of_fold(synth_dir, learned, tmp_path):
    samples, wrong = _planted(import_kaggle(synth_dir).samples[:70])
    issues = find_label_errors(samples, learned[0], tmp_path, QUICK)
    assert len(issues) == len(samples) and all(x.fold in (0, 1) for x in issues)
    top = {x.sample.path for x in issues[:len(wrong)]}
    assert len(top & wrong) >= len(wrong) - 1, [(x.sample.label, x.reading, round(x.score, 1)) for x in issues[:10]]
    assert all(x.score > 0 and x.reading != x.sample.label for x in issues if x.sample.path in top & wrong)
    assert all(x.score == 0 for x in issues if x.reading == x.sample.label)
    saved = json.loads((tmp_path / "label_issues.json").read_text())
    assert saved["config"]["folds"] == 2 and saved["issues"][0]["score"] == issues[0].score
    assert (tmp_path / "fold1" / "last.pt").exists() and (tmp_path / "fold2" / "last.pt").exists()


def test_a_crop_no_model_can_read_is_listed_apart_from_labels_the_models_read_otherwise():
    """The issue's case: the log ratio put illegible crops on top (BOKQHCHE read with P 0.027 against a label of P
    1e-7: 12.5), above a wrong label read otherwise with P 0.8 (4.4). "Unsure" is measured against the model's own
    confidence on the labels it reads right; an unsure reading the current model nearly shares (a long name: P 0.0024
    spread over 15 letters) is still an error, not a crop nobody can read."""
    def issue(label, reading, p_reading, p_label=None, in_sample=None):
        score = max(0.0, math.log(p_reading) - math.log(p_label)) if reading != label else 0.0
        return LabelIssue(Sample(f"{label}.jpg", label, "train"), 0, reading, p_reading, score,
                          math.log(p_label or p_reading), in_sample)

    illegible = issue("BOUCHER", "BOKQHCHE", 0.027, 1e-7, in_sample="BOUCHER")
    wrong = issue("NARTIN", "MARTIN", 0.8, 0.01)
    long_name = issue("DUCROCQ", "DJAMEL-ALEEXARE", 0.0024, 1e-30, in_sample="DJAMEL-ALEXANDRE")
    agreed = issue("DUPONT", "DUPOND", 0.6, 0.2, in_sample="DUPOND")
    read_right = [issue(f"NAME{i}", f"NAME{i}", p) for i, p in enumerate([0.5, 0.6, 0.7, 0.8, 0.9] * 4)]
    assert illegible.score > wrong.score  # what the errors were ranked by alone
    marked, threshold = mark_hard([illegible, wrong, long_name, agreed, *read_right])
    assert threshold == pytest.approx(0.2)  # at most HARD_TO_READ, here below the 10th percentile (0.5)
    assert [x.sample.label for x in rank(marked)[:4]] == ["DUCROCQ", "NARTIN", "DUPONT", "BOUCHER"]
    assert [x.hard_to_read for x in marked[:4]] == [True, False, False, False] and long_name.readings_agree
    weak = [issue(f"NAME{i}", f"NAME{i}", p) for i, p in enumerate([0.01, 0.02, 0.03, 0.05] * 5)]
    marked, threshold = mark_hard([illegible, wrong, *weak])  # a model unsure of everything it reads right
    assert threshold == pytest.approx(0.01) and not marked[0].hard_to_read  # 0.027 is sure, for it
    assert mark_hard([illegible])[1] == 0.0  # reads nothing right: nothing can be called hard


def test_a_label_the_model_finds_unlikely_in_every_letter_stays_a_suspected_error_on_a_crop_it_cannot_read():
    """Another name planted on a crop no model reads (SAINT-LEGER on PENCREAUL'H, read AMELIE with P 0.0004) was listed
    as hard to read: its label gets under 1 in 20 a character, which no reading of that crop explains, while the
    right label of a crop nobody reads (TRAORE read ANDRE) keeps about 1 in 10."""
    def issue(label, reading, p_reading, label_log_prob):
        return LabelIssue(Sample(f"{label}.jpg", label, "train"), 0, reading, p_reading,
                          math.log(p_reading) - label_log_prob, label_log_prob, "ROSALIE")

    other_name = issue("SAINT-LEGER", "AMELIE", 0.0004, -55.9)
    right_but_illegible = issue("TRAORE", "ANDRE", 0.001, -13.5)
    read_right = [LabelIssue(Sample(f"N{i}.jpg", f"N{i}", "train"), 0, f"N{i}", 0.9, 0.0, math.log(0.9), None)
                  for i in range(10)]
    marked, _ = mark_hard([other_name, right_but_illegible, *read_right])
    assert [x.hard_to_read for x in marked[:2]] == [False, True]
    assert other_name.label_unlikely and not right_but_illegible.label_unlikely
    assert rank(marked)[0].sample.label == "SAINT-LEGER"


def test_folds_cover_every_sample_once():
    folds = folds_of(103, 4, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(103)) and {len(f) for f in folds} == {25, 26}
    assert folds == folds_of(103, 4, seed=1) != folds_of(103, 4, seed=2)


@pytest.mark.parametrize("n, folds, message", [
    (30, 4, "finding label errors needs at least 50 labelled samples; this data has 30"),
    (60, 7, "folds=7: choose between 2 and 6 for 60 labels"),
    (60, 1, "folds=1: choose between 2 and 6"),
])
def test_a_search_that_cannot_work_is_refused_before_anything_is_written(synth_dir, trained, tmp_path, n, folds,
                                                                         message):
    samples = import_kaggle(synth_dir).samples[:n]
    with pytest.raises(TrainingError, match=message):
        find_label_errors(samples, trained, tmp_path / "out", replace(QUICK, folds=folds))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_job_stores_the_scores_and_review_shows_the_unsettled_ones(settings, synth_dir, learned):
    from db import catalog, corrections
    from db.registry import register_checkpoint
    from db.review import label_error_jobs, suspected_label_errors
    from jobs import queue
    from jobs.context import JobContext
    from jobs.kinds.label_errors import run as run_find_label_errors
    from jobs.params import ParamsError

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    model = register_checkpoint(settings, learned[0], "best", name="learned")
    with pytest.raises(ParamsError, match="folds=1 must be at least 2"):
        queue.submit(settings, "find-label-errors", {"model": model, "datasets": ["synth"], "folds": 1})
    items = catalog.training_items(settings, ["synth"])
    planted = items[0]
    corrections.correct_label(settings, planted.sample_id, items[-1].label, user="test")  # a wrong label
    # the model alone: what is tested here is the job and its rows (the LM's score: tests/test_charset.py; the page's
    # search runs with the LM: tests/test_dashboard.py)
    params = {"model": model, "datasets": ["synth"], "folds": 2, "max_minutes": 0.1, "lm": False}
    job_id = queue.submit(settings, "find-label-errors", params)
    result = run_find_label_errors(JobContext(settings, job_id, params))
    assert result["labels"] == result["scored"] == len(items) and result["doubted"] >= 1
    assert label_error_jobs(settings)[0]["job_id"] == job_id
    rows, total = suspected_label_errors(settings, job_id, page_size=500)
    assert total == result["doubted"] == len(rows)
    hard, n_hard = suspected_label_errors(settings, job_id, page_size=500, hard_to_read=True)
    assert n_hard == result["hard_to_read"] == len(hard) and all(r["confidence"] < 0.2 for r in hard)
    assert {r["sample_id"] for r in rows}.isdisjoint(r["sample_id"] for r in hard)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert planted.sample_id in [r["sample_id"] for r in rows[:5]], rows[:5]
    first = rows[0]
    corrections.correct_label(settings, first["sample_id"], first["reading"] or "X", user="test")
    assert suspected_label_errors(settings, job_id)[1] == total - 1  # settled: no longer listed
    assert suspected_label_errors(settings, job_id, include_settled=True)[1] == total


def test_a_job_on_too_few_labels_says_so_and_stores_nothing(settings, synth_dir, tmp_path, learned):
    from db import catalog
    from db.registry import register_checkpoint
    from db.review import label_error_jobs
    from jobs import queue
    from jobs.context import JobContext
    from jobs.kinds.label_errors import run as run_find_label_errors
    from ocr.data.synth import generate

    catalog.import_dataset(settings, generate(tmp_path / "few", 20, seed=13), "few", "synthetic")
    model = register_checkpoint(settings, learned[0], "best", name="learned")
    params = {"model": model, "datasets": ["few"]}
    job_id = queue.submit(settings, "find-label-errors", params)
    with pytest.raises(TrainingError, match="needs at least 50 labelled samples; this data has 20"):
        run_find_label_errors(JobContext(settings, job_id, params))
    assert label_error_jobs(settings) == []
