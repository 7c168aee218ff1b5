"""Shared by the benchmarks: where the data is, and one JSON line per figure."""

from __future__ import annotations

import json
import os
import platform
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
