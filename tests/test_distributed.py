"""One run over several processes, its parts on the CPU: each rank's share of an epoch's batches, validation sums added
over two real gloo ranks (never per-rank ratios averaged), rank 0's decision reaching every rank."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from ocr.alphabet import Alphabet
from ocr.data.batches import Batches, LoaderBatches
from ocr.data.datasets import LineDataset, import_kaggle
from ocr.preprocess import PreprocessConfig
from ocr.training.distributed import SINGLE, Ranks
from tests.conftest import _free_port


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
    from ocr.training.distributed import end, start
    from ocr.training.loop import validate

    ranks = Ranks(rank, 2)
    start(ranks, torch.device("cpu"))
    try:
        model, alphabet, pre = model_from_checkpoint(load_checkpoint(checkpoint))
        ds = LineDataset(import_kaggle(Path(folder)).samples[:63], alphabet, pre)
        figures = validate(model.eval(), ds, alphabet, torch.device("cpu"), 16, ranks)
        Path(out, f"rank{rank}.json").write_text(json.dumps({**figures, "stop": ranks.decide(rank == 0)}))
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
