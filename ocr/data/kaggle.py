"""Downloading the Kaggle dataset with the official ``kaggle`` client.

``import kaggle`` authenticates at import time and prints a long message without credentials,
so credentials are checked first and the API class is imported lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

from ocr.data.datasets import extract_zip

DATASET = "landlord/handwriting-recognition"
HOW = ("set KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json in ~/.kaggle/ "
       "(kaggle.com > Settings > API > Create New Token); or download the dataset yourself and run "
       "`python -m ocr import PATH_TO_ZIP_OR_FOLDER`")


class KaggleError(RuntimeError):
    pass


def has_credentials() -> bool:
    home = Path.home()
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR", home / ".kaggle"))
    return bool(
        (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))
        or os.environ.get("KAGGLE_API_TOKEN")
        or (config / "kaggle.json").exists()
        or (config / "access_token").exists()
    )


def _client():
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        api.authenticate()
    except SystemExit:  # the client exits instead of raising when credentials are bad
        raise KaggleError(f"Kaggle credentials were rejected: {HOW}") from None
    return api


def download(out: str | Path, dataset: str = DATASET, client_factory=_client) -> Path:
    """Download and safely extract ``dataset`` into ``out``; returns the extracted folder."""
    if not has_credentials():
        raise KaggleError(f"no Kaggle credentials: {HOW}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    api = client_factory()
    try:
        api.dataset_download_files(dataset, path=str(out), unzip=False, quiet=False)
    except SystemExit:
        raise KaggleError(f"the Kaggle client gave up downloading {dataset}: {HOW}") from None
    except Exception as exc:  # noqa: BLE001 - network, HTTP and API errors all end the same way for the user
        raise KaggleError(f"could not download {dataset} from Kaggle ({exc.__class__.__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}); check the network, or "
                          "download it yourself and run `python -m ocr import PATH`") from None
    zips = sorted(out.glob("*.zip"))
    if not zips:
        raise KaggleError(f"the download left no zip file in {out}")
    return extract_zip(zips[0], out)
