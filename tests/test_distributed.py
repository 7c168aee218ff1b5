"""One run over several processes, on the CPU with gloo: each rank's share of an epoch's batches, validation sums added
over two real ranks (never per-rank ratios averaged), rank 0's decision reaching every rank, identical weights after
a DDP step, and ``ocr train --gpus 2`` (which starts itself under torchrun) with two ranks whose checkpoint resumes in
one process; the options that cannot work are refused in one line."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from ocr.alphabet import Alphabet
from ocr.data.batches import Batches, LoaderBatches
from ocr.data.datasets import LineDataset, import_kaggle
from ocr.preprocess import PreprocessConfig
from ocr.training.distributed import SINGLE, Ranks
from tests.conftest import PY, ROOT, _free_port


def test_a_place_in_a_run_is_checked_and_read_from_torchruns_environment(monkeypatch):
    with pytest.raises(ValueError, match="rank 2 of 2"):
        Ranks(2, 2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert Ranks.from_env() == Ranks(1, 3, 1) and not Ranks.from_env().main
    assert list(Ranks(1, 3).share(8)) == [1, 4, 7] and SINGLE.sum([1.5, 2]) == [1.5, 2] and SINGLE.decide(True)


def test_the_ranks_share_each_epochs_one_order_each_batch_once(synth_dir):
    ds = LineDataset(import_kaggle(synth_dir).samples[:50], Alphabet(), PreprocessConfig())
    one = Batches(ds.images, ds.targets, 8, augment=None)
    one.seed(5)
    whole = [b[2] for b in one]  # targets of the 6 full batches one process trains on
    shares = []
    for rank in (0, 1):
        mine = Batches(ds.images, ds.targets, 8, augment=None)
        mine.share(rank, 2)
        mine.seed(5)
        assert len(mine) == 3 and list(mine.keys()) == [rank, rank + 2, rank + 4]
        got = [b[2] for b in mine]
        served = LoaderBatches(mine, 0)
        assert all(torch.equal(a[2], b) for a, b in zip(served, got, strict=True))  # the loader path serves the same
        shares.append(got)
    assert all(torch.equal(a, b) for a, b in zip([*shares[0], *shares[1]], [*whole[0::2], *whole[1::2]], strict=True))
    with pytest.raises(ValueError):
        one.share(2, 2)


def _rank(rank: int, port: int, checkpoint: str, folder: str, out: str) -> None:
    """One gloo rank: validate its share and write what every rank got back."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from ocr.checkpoint import load_checkpoint, model_from_checkpoint
    from ocr.training.config import TrainConfig
    from ocr.training.distributed import end, start
    from ocr.training.loop import validate

    ranks = Ranks(rank, 2)
    start(ranks, torch.device("cpu"))
    try:
        model, alphabet, pre = model_from_checkpoint(load_checkpoint(checkpoint))
        ds = LineDataset(import_kaggle(Path(folder)).samples[:63], alphabet, pre)
        figures = validate(model.eval(), ds, alphabet, torch.device("cpu"), 16, ranks)
        Path(out, f"rank{rank}.json").write_text(json.dumps({**figures, "stop": ranks.decide(rank == 0)}))
        # one DDP step on each rank's own batch: the same weights on both ranks after it
        from ocr.data.batches import Batches
        from ocr.training.distributed import wrap
        from ocr.training.loop import resolve_precision, train_step

        batches = Batches(ds.images, ds.targets, 8, augment=None)
        batches.share(rank, 2)
        batches.seed(1)
        net = wrap(model.train(), ranks, torch.device("cpu"))
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        fp32 = resolve_precision("fp32", torch.device("cpu"))
        train_step(net, next(iter(batches)), opt, sched, fp32.scaler(), fp32, TrainConfig(), torch.device("cpu"))
        torch.save(dict(model.named_parameters()), Path(out, f"rank{rank}.pt"))  # (buffers, BatchNorm's running
        # statistics, are rank 0's from the next forward on: DDP broadcasts them there)
    finally:
        end(ranks)


def test_validation_over_two_gloo_ranks_adds_errors_and_lengths(learned, synth_dir, tmp_path):
    """63 images: the ranks read 32 and 31; the figures are those of one process reading all 63."""
    from ocr.checkpoint import load_checkpoint, model_from_checkpoint
    from ocr.training.loop import validate

    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, str(learned[0]), str(synth_dir), str(tmp_path))) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=10)
    assert [p.exitcode for p in procs] == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # every rank holds the summed figures, and rank 0's decision
    assert ranks[0]["stop"] is True

    model, alphabet, pre = model_from_checkpoint(load_checkpoint(learned[0]))
    ds = LineDataset(import_kaggle(synth_dir).samples[:63], alphabet, pre)
    alone = validate(model.eval(), ds, alphabet, torch.device("cpu"), 16)
    assert ranks[0]["n_val"] == alone["n_val"] == 63
    assert ranks[0]["val_exact_match"] == pytest.approx(alone["val_exact_match"], abs=1e-9)  # counts over counts
    assert ranks[0]["val_cer"] == pytest.approx(alone["val_cer"], abs=1e-9)
    assert ranks[0]["val_loss"] == pytest.approx(alone["val_loss"], rel=1e-4)  # other batches: float sums differ
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    before = load_checkpoint(learned[0])["model"]
    assert len(a) == len(b) > 10 and any(not torch.equal(a[k], before[k]) for k in a)  # the step changed them
    for k in a:
        assert torch.equal(a[k], b[k]), k  # the same averaged gradient applied on both ranks


def _ocr_in_a_group(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m ocr ...`` (which may start torchrun and its ranks); its process group is killed if it outlives
    ``timeout``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([PY, "-m", "ocr", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_train_on_two_gloo_ranks_under_torchrun_and_one_process_resumes_it(tmp_path):
    from ocr.checkpoint import load_checkpoint, save_checkpoint
    from ocr.data.synth import generate
    from ocr.training.loop import lr_factor

    data, run = generate(tmp_path / "synth", 48, seed=2), tmp_path / "run"
    r = _ocr_in_a_group("train", "--data", f"{data}:train", "--out", str(run), "--epochs", "3", "--batch-size", "8",
                        "--lr", "2e-3", "--device", "cpu", "--quiet", "--no-augment", "--gpus", "2")  # torchrun, 2 ranks
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("done: 3 epoch(s)") == 1  # rank 0 reports
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    start = records[0]
    assert start["ranks"] == 2 and start["lr"] == pytest.approx(2e-3 * math.sqrt(2))  # the square-root rule
    assert start["steps_per_epoch"] == 2  # 46 training images, batches of 8, two ranks: 5 batches, 2 each
    epochs = [m for m in records if m["type"] == "epoch"]
    assert [m["epoch"] for m in epochs] == [1, 2, 3]  # written once, by rank 0
    assert epochs[-1]["train_loss"] < 0.8 * epochs[0]["train_loss"], epochs  # it learns
    assert epochs[-1]["n_val"] == 2  # both validation images counted once

    ckpt = load_checkpoint(run / "last.pt", for_resume=True)  # as if the run had been planned for 4 epochs
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the model's own names, not DDP's
    ckpt["run_state"]["planned_epochs"] = 4
    ckpt["train_config"]["epochs"] = 4
    save_checkpoint(run / "last.pt", ckpt)
    one = subprocess.run([PY, "-m", "ocr", "train", "--out", str(run), "--resume", "--quiet"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "resuming after epoch 3" in one.stderr and "done: 4 epoch(s)" in one.stdout
    last = [m for line in (run / "metrics.jsonl").read_text().splitlines() if (m := json.loads(line))["type"] == "epoch"][-1]
    assert last["epoch"] == 4
    # one rank: 5 steps an epoch at the plain rate, and the schedule ends on the run's last step (not the 2-rank one's
    # step 6 of 8 at the square-root rate)
    factor = lr_factor(ckpt["train_config"]["scheduler"], 20, 20)
    assert last["lr"] == pytest.approx(2e-3 * factor), last


@pytest.mark.parametrize("options, message", [
    (["--devices", "cuda:0,cuda:0"], "--devices takes distinct GPUs such as cuda:0,cuda:1"),
    (["--devices", "gpu1"], "--devices takes distinct GPUs"),
    (["--gpus", "0"], "--gpus must be at least 1"),
    (["--gpus", "2", "--self-train", "0.3", "--unlabelled", "."], "--self-train runs in one process for now"),
])
def test_train_on_devices_that_cannot_work_is_one_line(options, message, tmp_path):
    r = subprocess.run([PY, "-m", "ocr", "train", "--data", f"{tmp_path}:train", "--out", str(tmp_path / "run"),
                        *options], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr
