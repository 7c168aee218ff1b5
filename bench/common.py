"""Shared by the benchmarks: where the data is, and one JSON line per figure."""

from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("HWR_REAL_DATA", ROOT.parent / "shared" / "data" / "kaggle-names"))
CACHE = Path(os.environ.get("HWR_BENCH_DIR", ROOT / "data" / "bench"))


def emit(bench: str, **fields) -> None:
    print(json.dumps({"bench": bench, **fields, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "cpu": platform.processor() or platform.machine()}), flush=True)


def synthetic(n: int = 20000, seed: int = 0) -> Path:
    """The default synthetic dataset, generated once."""
    from ocr.data.synth import SYNTH_VERSION, generate

    out = CACHE / f"synth-v{SYNTH_VERSION}-{n}-s{seed}"
    if not (out / "written_name_train_v2.csv").exists():
        generate(out, n, seed=seed, workers=os.cpu_count() or 1)
    return out


def real_split():
    """The real sample split as the benchmarks use it: CSV rows 1-800 train, rows 801-1000 validate
    (unusable rows dropped from each part)."""
    from ocr.data.datasets import import_kaggle

    real = import_kaggle(REAL, ("validation",)).samples
    cut = "VALIDATION_0800.jpg"
    return [s for s in real if s.path.name <= cut], [s for s in real if s.path.name > cut]


def copy_model(source: Path, to: Path) -> Path:
    """A model taken from elsewhere (a checkpoint or a model folder), copied into a run's folder ``to`` so that the
    run never writes over it; one clear line for a model that cannot be read, before anything trains."""
    from ocr.checkpoint import load_checkpoint

    load_checkpoint(source)
    to.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        return Path(shutil.copytree(source, to))
    to.mkdir()
    return Path(shutil.copy(source, to / source.name))


def further_rounds(data: list, val: list, pool: list[Path], run: Path, cfg, last: Path, rounds: int,
                   round_epochs: int, callback=None, each=None, done: int = 1) -> Path:
    """Iterated self-training after ``done`` rounds (``last``, the last one's model): each further round up to
    ``rounds``, the last model reads the pool again and a student fine-tunes from it on ``data`` + its pseudo-labels
    for ``round_epochs`` at half ``cfg``'s rate, in ``run/round-R/`` (what a retrain job does in the product:
    ``ocr train --teacher CKPT --init CKPT``). ``each(round, checkpoint)`` sees every round's model before the next
    round; returns the last round's last.pt."""
    from ocr.training.selftrain import fit_self_training

    for r in range(done + 1, rounds + 1):
        if each is not None:
            each(r - 1, last)
        round_cfg = replace(cfg, epochs=round_epochs, max_minutes=None, lr=cfg.lr / 2)
        fit_self_training(data, val, pool, run / f"round-{r}", round_cfg, init=last, teacher=last, callback=callback)
        last = run / f"round-{r}" / "last.pt"
    return last
