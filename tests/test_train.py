import json
import time

import pytest
import torch

from ocr.checkpoint import load_checkpoint, save_checkpoint
from ocr.data.datasets import import_kaggle
from ocr.model import CRNN, preset
from ocr.training.loop import Callback, TrainConfig, TrainingError, fit


def test_small_model_overfits_64_synthetic_samples(learned):
    """The learning check: real training of the small preset must memorise 64 samples (see conftest ``learned``)."""
    _, exact = learned
    assert max(exact) >= 0.95, f"best exact match {max(exact):.3f} after {len(exact)} epochs"
    assert exact[0] < 0.5  # it learned them; it did not start out knowing them
    assert len(exact) < 300


def test_checkpoints_metrics_and_callbacks(trained):
    run = trained.parent
    ckpt = load_checkpoint(trained)
    for key in ("model", "model_config", "alphabet", "preprocess", "train_config", "optimizer", "scheduler", "metrics"):
        assert key in ckpt
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["type"] for r in records]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("epoch") == 2 and "step" in kinds
    step = next(r for r in records if r["type"] == "step")
    assert {"train_loss", "lr", "samples_per_s"} <= set(step)
    epoch = next(r for r in records if r["type"] == "epoch")
    assert {"val_loss", "val_exact_match", "val_cer", "train_loss"} <= set(epoch)
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(synth_dir, tmp_path, ema):
    samples = import_kaggle(synth_dir).samples[:96]
    train, val = samples[:80], samples[80:]
    cfg = TrainConfig(epochs=2, batch_size=16, seed=3, ema=ema)
    fit(train, val, tmp_path / "full", cfg, progress=False)

    class StopAfterOneEpoch(Callback):
        def on_epoch(self, m):
            self.done = True

        def should_stop(self):
            return getattr(self, "done", False)

    part = fit(train, val, tmp_path / "part", cfg, callback=StopAfterOneEpoch(), progress=False)
    assert part["epochs"] == 1
    resumed = fit(train, val, tmp_path / "part", cfg, resume=True, progress=False)
    assert resumed["epochs"] == 2
    full, part = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "part" / "last.pt")
    for weights in ("model", "trained_model") if ema else ("model",):  # with averaging: the average and the weights
        for k in full[weights]:
            torch.testing.assert_close(full[weights][k], part[weights][k], rtol=0, atol=1e-6, msg=f"{weights} {k}")
    assert full.get("average_updates") == part.get("average_updates") == (10 if ema else None)  # 2 epochs of 5 steps


def test_weight_averaging_saves_and_validates_the_average(synth_dir, tmp_path):
    from ocr.checkpoint import model_from_checkpoint
    from ocr.data.datasets import LineDataset
    from ocr.training.averaging import decay_after
    from ocr.training.loop import validate

    samples = import_kaggle(synth_dir).samples[:96]
    summary = fit(samples[:80], samples[80:], tmp_path, TrainConfig(epochs=2, batch_size=16, ema=0.9), progress=False)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    average, trained = ckpt["model"], ckpt["trained_model"]
    assert any(not torch.equal(average[k], trained[k]) for k in average if average[k].is_floating_point())
    model, alphabet, prep = model_from_checkpoint(ckpt)
    figures = validate(model, LineDataset(samples[80:], alphabet, prep), alphabet, torch.device("cpu"), 64)
    for figure in ("val_loss", "val_cer"):  # the average is what was scored
        assert figures[figure] == pytest.approx(summary["last"][figure], rel=1e-6)
    assert decay_after(0, 0.999) == pytest.approx(0.1) and decay_after(10_000, 0.999) == 0.999


def test_fine_tune_starts_from_the_given_weights(trained, synth_dir, tmp_path):
    samples = import_kaggle(synth_dir).samples
    base = load_checkpoint(trained)
    summary = fit(samples[:40], samples[40:60], tmp_path, TrainConfig(epochs=1, lr=1e-9, scheduler="constant"),
                  init=trained, progress=False)
    tuned = load_checkpoint(tmp_path / "last.pt")
    assert summary["epochs"] == 1
    # with a vanishing learning rate the conv weights barely move from the initial checkpoint
    w0, w1 = base["model"]["cnn.0.0.weight"], tuned["model"]["cnn.0.0.weight"]
    assert torch.allclose(w0, w1, atol=1e-4)


def test_labels_too_long_for_the_model_are_reported(synth_dir, tmp_path):
    from dataclasses import replace

    samples = import_kaggle(synth_dir).samples[:40]
    long = [replace(s, label="ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 3) for s in samples[:3]]
    messages = []

    class Listen(Callback):
        def on_message(self, text):
            messages.append(text)

    fit(long + samples[3:30], samples[30:], tmp_path, TrainConfig(epochs=1), callback=Listen(), progress=False)
    assert any("3 training label(s) longer than the model can emit" in m for m in messages)


def test_non_finite_losses_stop_with_a_clear_error(synth_dir, tmp_path):
    model = CRNN(preset("small", 30))
    for p in model.parameters():
        p.data.fill_(float("nan"))
    ckpt = {"model": model.state_dict(), "model_config": model.cfg.to_dict(), "alphabet": " '-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "preprocess": {"height": 32, "max_width": 256}}
    save_checkpoint(tmp_path / "nan.pt", ckpt)
    samples = import_kaggle(synth_dir).samples[:80]
    with pytest.raises(TrainingError, match="non-finite loss"):
        fit(samples[:70], samples[70:], tmp_path / "run", TrainConfig(epochs=1, batch_size=8, max_bad_batches=3),
            init=tmp_path / "nan.pt", progress=False)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert lines.count('"bad_batch"') == 3


def test_time_budget_plans_the_schedule_to_end_with_the_budget(synth_dir, tmp_path):
    samples = import_kaggle(synth_dir).samples
    cfg = TrainConfig(epochs=1000, max_minutes=0.15, batch_size=32)
    t = time.monotonic()
    summary = fit(samples[:96], samples[180:], tmp_path, cfg, progress=False)
    elapsed = time.monotonic() - t
    assert elapsed < 0.15 * 60 + 8  # the budget plus decoding the images and the last validation
    assert summary["epochs"] >= 2 and (tmp_path / "best.pt").exists()
    steps = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last_lr = [r["lr"] for r in steps if r["type"] == "epoch"][-1]
    assert last_lr < 0.5 * cfg.lr  # the schedule ran most of its way down, not cut at its peak (steps timed at the
    # start of a run on a loaded machine may be faster than its last ones: ~0.05 alone, up to ~0.3 beside other tests)


def test_preset_names_for_the_command_lines_are_the_model_presets():
    from ocr.model import PRESETS
    from ocr.training.config import PRESET_NAMES

    assert PRESET_NAMES == tuple(PRESETS)


@pytest.mark.parametrize("name", ["small", "large", "textbook"])
def test_every_preset_counts_no_more_time_steps_than_it_emits_and_names_its_input(name):
    """CTC reads ``output_length(width)`` steps of what the model emits: it must never count a step the model did not
    make (a stem of another stride changes the rounding), and the input a preset reads is its own (``textbook``: the
    notebooks' 64 x 256)."""
    cfg = preset(name, 30)
    model = CRNN(cfg).eval()
    for width in (4, 5, 37, 256, 383, 384, 521):
        with torch.no_grad():
            steps = model(torch.zeros(1, 1, cfg.height, width)).shape[0]
        assert cfg.output_length(width) <= steps <= cfg.output_length(width) + 1, (width, steps)
    assert (cfg.preprocess().height, cfg.preprocess().max_width) == (cfg.height, 256)
