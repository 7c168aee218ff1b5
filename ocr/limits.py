"""The limits every input is held to, one place for the importer, corrections, drawing and zip extraction.

Size limits can be raised by the operator with environment variables (shown on the dashboard's Settings page and
named in every error that cites them); the label length is the width of the database's label columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_LABEL_LENGTH = 200  # characters; the database stores labels in String(200)


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        raise ValueError(f"{name}={os.environ[name]!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name}={os.environ[name]!r} must be a positive finite number")
    return value


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int = 64_000_000  # HWR_MAX_IMAGE_MPX: larger images are refused (decompression bombs)
    max_zip_bytes: int = 20 * 10**9  # HWR_MAX_ZIP_GB: total uncompressed size of a zip's members
    max_zip_ratio: float = 100.0  # HWR_MAX_ZIP_RATIO: uncompressed / compressed size of a zip (JPEG zips are ~1)
    max_zip_members: int = 2_000_000  # files in one zip (the whole Kaggle dataset has ~410,000)

    @classmethod
    def from_env(cls) -> Limits:
        return cls(max_image_pixels=int(_env_float("HWR_MAX_IMAGE_MPX", 64) * 1_000_000),
                   max_zip_bytes=int(_env_float("HWR_MAX_ZIP_GB", 20) * 10**9),
                   max_zip_ratio=_env_float("HWR_MAX_ZIP_RATIO", 100.0))

    def describe(self) -> dict[str, str]:
        """Setting -> value, for the Settings page."""
        return {"HWR_MAX_IMAGE_MPX": f"{self.max_image_pixels / 1e6:g} Mpx per image",
                "HWR_MAX_ZIP_GB": f"{self.max_zip_bytes / 1e9:g} GB uncompressed per zip",
                "HWR_MAX_ZIP_RATIO": f"{self.max_zip_ratio:g}x uncompressed / compressed",
                "label length": f"{MAX_LABEL_LENGTH} characters (the database's label columns)"}


def limits() -> Limits:
    """The limits in force, read from the environment each time (a test or an operator may change them)."""
    return Limits.from_env()
