"""What every page shares: the settings and the background worker (started once per server process)."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from db.settings import Settings


def settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(show_spinner=False)
def _worker_process(data_dir: str, url: str, device: str):
    from jobs.control import ensure_worker

    return ensure_worker(Settings(data_dir=Path(data_dir), database_url=url), device)


def ensure_background_worker() -> None:
    """Start ``python -m jobs.worker`` unless one is alive (``HWR_START_WORKER=0`` turns this off, e.g. in tests)."""
    if os.environ.get("HWR_START_WORKER", "1") == "0":
        return
    s = settings()
    _worker_process(str(s.data_dir), s.database_url, os.environ.get("HWR_DEVICE", "auto"))
