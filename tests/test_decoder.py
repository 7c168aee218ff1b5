"""One decoder configuration for every reader: the width rules in one place, and the CLI's evaluation and an evaluate
job read the same images into the same texts and confidences."""

from __future__ import annotations

import csv

import pytest

from ocr.decoding.decoder import DecoderConfig


@pytest.mark.parametrize("config, width, name", [
    (DecoderConfig(), 0, "greedy"),
    (DecoderConfig(beam=10), 10, "beam10"),
    (DecoderConfig(lm="names"), 20, "beam20+names LM"),
    (DecoderConfig(beam=30, lm="names"), 30, "beam30+names LM"),
    (DecoderConfig(lm="names", lm_weight=0.3), 20, "beam20+lm(names, 0.3)"),
    (DecoderConfig(lexicon="names"), 10, "beam10+lexicon(names, 0.01)"),
])
def test_beam_width_and_name(config, width, name):
    assert config.beam_width == width and config.describe() == name
    assert config.to_dict()["name"] == name and config.to_dict()["beam_width"] == width


def test_a_beam_out_of_range_is_refused():
    with pytest.raises(ValueError, match="beam=101 must be between 0"):
        DecoderConfig(beam=101)


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)  # one backend: the kind's path
def test_the_command_line_and_an_evaluate_job_read_alike(settings, synth_dir, trained, tmp_path):
    from db import catalog
    from db.engine import session
    from db.models import Prediction, Sample
    from db.registry import adopt_checkpoint
    from jobs import queue
    from jobs.runner import run
    from ocr.evaluation.evaluate import evaluate

    config = DecoderConfig(beam=5)
    metrics = evaluate(trained, synth_dir, "train", tmp_path / "cli", decoder=config)
    assert metrics["decoder"] == "beam5" and metrics["decoder_config"]["beam_width"] == 5
    with (tmp_path / "cli" / "predictions.csv").open() as f:
        cli = {r["file"]: (r["prediction"], float(r["confidence"])) for r in csv.DictReader(f)}

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    model_id = adopt_checkpoint(settings, trained, ["synth"], "tiny")
    job_id = queue.submit(settings, "evaluate", {"model": model_id, "dataset": "synth", "split": "train", "beam": 5,
                                                 "report": False})
    assert queue.claim(settings, "w", "cpu").id == job_id and run(job_id, "cpu", settings) == 0
    result = queue.job_status(settings, job_id)["result"]
    assert result["decoder"] == "beam5" and result["decoder_config"] == config.to_dict()
    with session(settings) as s:
        rows = s.execute(select_predictions(Prediction, Sample, model_id)).all()
    job = {path.rsplit("/", 1)[-1]: (text, conf) for path, text, conf in rows}
    assert job.keys() == cli.keys() and len(job) == 200
    for name, (text, conf) in job.items():
        assert text == cli[name][0] and conf == pytest.approx(cli[name][1], abs=1e-4), name


def select_predictions(Prediction, Sample, model_id):
    from sqlalchemy import select

    return (select(Sample.path, Prediction.text, Prediction.confidence)
            .join(Sample, Sample.id == Prediction.sample_id).where(Prediction.model_id == model_id))
