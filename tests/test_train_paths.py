"""Every branch a GPU run takes, on the CPU: both data paths (DataLoader and on-device batches) under fp32 and bfloat16
autocast, with epochs and with a time budget, resumed exactly and fine-tuned with ``--init``; plus the pieces of the
loop one by one. A run that needs a real GPU is marked and skips with a reason here."""

from __future__ import annotations

import json

import pytest
import torch

from ocr.checkpoint import load_checkpoint
from ocr.data.batches import LoaderBatches
from ocr.data.datasets import import_kaggle
from ocr.model import CRNN, preset
from ocr.training.config import ConfigError, TrainConfig
from ocr.training.loop import Callback, TrainingError, fit, resolve_precision, train_step, training_batches

FAST = {"batch_size": 16, "lr": 5e-3, "log_every": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def samples(synth_dir):
    return import_kaggle(synth_dir).samples[:64]


def _step_losses(run_dir) -> list[float]:
    return [r["train_loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r["type"] == "step"]


def _epoch_losses(run_dir) -> list[float]:
    return [r["train_loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r["type"] == "epoch"]


@pytest.mark.parametrize("budget", [None, 0.12], ids=["epochs", "time-budget"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("on_device", [False, True], ids=["loader", "on-device"])
def test_each_data_path_and_precision_trains_and_learns(samples, tmp_path, on_device, precision, budget):
    """The loss falls on every path; a budgeted run plans its epochs from timed steps of the same path (the crash a
    first GPU job met: the planner read ``loader.dataset``, which on-device batches do not have)."""
    cfg = TrainConfig(epochs=6, max_minutes=budget, data_on_device=on_device, precision=precision,
                      **{**FAST, "batch_size": 8})  # bfloat16 on a CPU without it in hardware: small steps
    messages = []

    class Listen(Callback):
        def on_message(self, text):
            messages.append(text)

    summary = fit(samples[:16], samples[:8], tmp_path, cfg, callback=Listen(), progress=False)  # 2 batches of 8
    assert summary["data_on_device"] is on_device and summary["precision"] == precision
    losses = _epoch_losses(tmp_path)
    assert summary["epochs"] == len(losses) >= (1 if budget else 2)  # how many fit a budget depends on the CPU
    steps = _step_losses(tmp_path)
    if budget is None:  # it learns (a fresh model's CTC loss is ~10x the plateau's); a budget may hold one epoch on a
        assert len(steps) >= 2 and steps[-1] < 0.8 * steps[0], steps  # slow CPU, and this path learns just above
    assert steps and all(0 < s < 1e3 for s in steps), steps
    assert summary["last"]["n_val"] == 8  # validation ran every epoch
    if budget is not None:
        assert any(m.startswith("planned ") and "-minute budget" in m for m in messages), messages


@pytest.mark.parametrize("on_device", [False, True], ids=["loader", "on-device"])
def test_resume_and_init_on_each_data_path_under_autocast(samples, tmp_path, on_device):
    cfg = TrainConfig(epochs=2, seed=3, data_on_device=on_device, precision="bf16", **{**FAST, "batch_size": 8})
    # 3 batches an epoch: a stop after the first batch of epoch 2 leaves epoch 1 the last complete one
    fit(samples[:24], samples[:8], tmp_path / "full", cfg, progress=False)

    class StopAfterOneEpoch(Callback):
        def on_epoch(self, m):
            self.done = True

        def should_stop(self):
            return getattr(self, "done", False)

    assert fit(samples[:24], samples[:8], tmp_path / "part", cfg, callback=StopAfterOneEpoch(), progress=False)["epochs"] == 1
    assert fit(samples[:24], samples[:8], tmp_path / "part", cfg, resume=True, progress=False)["epochs"] == 2
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)  # the same shuffles, augmentations, dropout
    still = {**FAST, "lr": 1e-9, "batch_size": 8}
    tuned = fit(samples[:16], samples[:8], tmp_path / "tuned", TrainConfig(epochs=1, scheduler="constant", precision="bf16",
                                                                        data_on_device=on_device, **still),
                init=tmp_path / "full" / "best.pt", progress=False)
    assert tuned["epochs"] == 1
    base = load_checkpoint(tmp_path / "full" / "best.pt")["model"]
    after = load_checkpoint(tmp_path / "tuned" / "last.pt")["model"]
    torch.testing.assert_close(after["cnn.0.0.weight"], base["cnn.0.0.weight"], rtol=0, atol=1e-4)  # it started there


def test_a_budgeted_resume_keeps_its_plan(samples, tmp_path):
    cfg = TrainConfig(epochs=50, max_minutes=0.05, data_on_device=True, **FAST)
    first = fit(samples, samples[:16], tmp_path, cfg, progress=False)
    assert first["planned_epochs"] >= first["epochs"] >= 1
    again = fit(samples, samples[:16], tmp_path, cfg, resume=True, progress=False)
    assert again["planned_epochs"] == first["planned_epochs"]


def test_validation_during_training_agrees_with_a_later_evaluation(samples, learned, tmp_path):
    """The best epoch's validation figures are what ``ocr evaluate`` (greedy, torch: the engine validation reads with)
    then reports for the same split: one preprocessing, one decoding, one reading path (``read_arrays``)."""
    from ocr.data.synth import generate
    from ocr.evaluation.evaluate import evaluate

    val_dir = generate(tmp_path / "val", 48, seed=5, split="validation")
    val = import_kaggle(val_dir, ("validation",)).samples
    cfg = TrainConfig(epochs=1, scheduler="constant", **{**FAST, "lr": 1e-5})
    summary = fit(samples, val, tmp_path / "run", cfg, init=learned[0], progress=False)
    best = summary["best"]
    assert 0 < best["val_cer"] < 1  # partly right, so agreement is not trivial
    metrics = evaluate(tmp_path / "run" / "best.pt", val_dir, "validation", tmp_path / "eval", engine="torch")
    assert metrics["engine"] == "torch"
    assert metrics["n"] == best["n_val"] == 48
    assert metrics["cer"] == pytest.approx(best["val_cer"], abs=1e-9)
    assert metrics["exact_match"] == pytest.approx(best["val_exact_match"], abs=1e-9)


def test_precision_choice():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).name == "fp32"
    bf16 = resolve_precision("bf16", cpu)
    assert bf16.dtype is torch.bfloat16 and not bf16.scaler().is_enabled()
    with pytest.raises(TrainingError, match="fp16 mixed precision needs a CUDA GPU; use bf16 on the CPU"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        TrainConfig(precision="fp8")
    # checkpoints of earlier versions saved "amp"
    assert TrainConfig.from_dict({"amp": False}).precision == "fp32"
    assert TrainConfig.from_dict({"amp": True}).precision == "auto"


def test_both_data_paths_serve_the_same_contract(samples):
    from ocr.alphabet import Alphabet
    from ocr.data.datasets import LineDataset
    from ocr.preprocess import PreprocessConfig

    ds = LineDataset(samples, Alphabet(), PreprocessConfig())
    cpu = torch.device("cpu")
    for on_device in (False, True):
        batches = training_batches(ds, TrainConfig(batch_size=16, augment=False, data_on_device=on_device), cpu)
        assert isinstance(batches, LoaderBatches) is not on_device
        assert batches.num_samples == 64 and len(batches) == 4
        batches.seed(5)
        first = [b[0].sum().item() for b in batches]
        batches.seed(5)
        assert first == [b[0].sum().item() for b in batches]  # per-epoch seeding: an exact resume
        images, widths, targets, lengths = next(iter(batches))
        assert images.shape[:2] == (16, 1) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
        assert widths.shape == (16,) and int(lengths.sum()) == len(targets)


def test_one_step_skips_a_non_finite_loss_and_updates_nothing_then():
    model = CRNN(preset("small", 30))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    precision = resolve_precision("bf16", torch.device("cpu"))
    cfg = TrainConfig(grad_clip=5.0)
    images = torch.rand(2, 1, 32, 64)
    batch = (images, torch.tensor([64, 64]), torch.tensor([3, 4, 5, 6]), torch.tensor([2, 2]))
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_step(model, batch, opt, sched, precision.scaler(), precision, cfg, torch.device("cpu"))
    assert loss is not None and loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for p in model.parameters():
        p.data.fill_(float("nan"))
    assert train_step(model, batch, opt, sched, precision.scaler(), precision, cfg, torch.device("cpu")) is None


@pytest.mark.gpu
def test_a_real_gpu_trains_on_device_in_bf16(samples, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine (the GPU path is the one the CPU tests above run)")
    summary = fit(samples, samples[:16], tmp_path, TrainConfig(epochs=3, batch_size=16, lr=5e-3, device="cuda"),
                  progress=False)
    assert summary["data_on_device"] is True and summary["precision"] in ("bf16", "fp16")
    losses = _epoch_losses(tmp_path)
    assert losses[-1] < losses[0]


def test_running_out_of_device_memory_ends_the_run_saying_what_to_lower(samples, tmp_path):
    """The branch a CUDA out-of-memory error takes, raised here where a GPU would raise it (inside a training step)."""

    class OutOfMemory(Callback):
        def on_step(self, m):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    cfg = TrainConfig(epochs=2, preset="large", batch_size=64, log_every=1, device="cpu")
    with pytest.raises(TrainingError, match="cpu ran out of memory with batch size 64 and the large preset: lower "
                                            r"--batch-size \(e.g. 32\) or use the small preset"):
        fit(samples, samples[:16], tmp_path, cfg, callback=OutOfMemory(), progress=False)
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["type"] == "end"


def test_a_budget_smaller_than_one_epoch_still_ends_with_a_model(samples, tmp_path):
    """A job whose budget ends inside its first epoch keeps what it learned (later epochs cut short are dropped)."""
    cfg = TrainConfig(epochs=5, max_minutes=0.002, **FAST)
    summary = fit(samples * 8, samples[:16], tmp_path, cfg, progress=False)
    assert summary["stopped"] == "time budget reached" and summary["epochs"] == 1
    assert (tmp_path / "best.pt").exists() and summary["best"]["n_val"] == 16
