"""Shared fixtures: real data location, small synthetic datasets, a trained tiny checkpoint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("HWR_REAL_DATA", ROOT.parent / "shared" / "data" / "kaggle-names"))
PY = sys.executable


def pytest_configure(config):
    os.environ.setdefault("HWR_CACHE_DIR", str(ROOT / "data" / "cache"))  # names table extracted once per checkout


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not (REAL / "written_name_validation_v2.csv").exists():
        pytest.skip(f"real Kaggle sample not found at {REAL} (set HWR_REAL_DATA to run these tests)")
    return REAL


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """200 synthetic images in Kaggle layout."""
    from ocr.synth import generate

    return generate(tmp_path_factory.mktemp("synth"), 200, seed=0)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synth_dir) -> Path:
    """A small model trained for a couple of epochs: real training, a real checkpoint."""
    from ocr.datasets import holdout_split, import_kaggle
    from ocr.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("run")
    train, val = holdout_split(import_kaggle(synth_dir).samples, 0.1, 0)
    fit(train, val, out, TrainConfig(epochs=2, batch_size=32, log_every=2), progress=False)
    return out / "best.pt"
