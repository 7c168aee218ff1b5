"""Settings and about: where the data and the database are, which device the worker uses."""

import os
import platform

import streamlit as st

from dashboard.state import settings
from jobs.queue import alive_workers

s = settings()
st.title("Settings")
st.caption("Set these with environment variables before starting the dashboard.")
st.table({
    "setting": ["HWR_DATA_DIR", "HWR_DATABASE_URL", "HWR_DEVICE", "HWR_START_WORKER", "HWR_DEFAULT_DATA"],
    "value": [str(s.data_dir), s.redacted_url, os.environ.get("HWR_DEVICE", "auto"),
              os.environ.get("HWR_START_WORKER", "1"), os.environ.get("HWR_DEFAULT_DATA", "20000")],
    "meaning": ["images, runs, logs and the SQLite file", "any SQLAlchemy URL (SQLite by default)",
                "device of the background worker (auto, cpu, cuda, cuda:N)", "0: do not start a worker",
                "synthetic names generated on a fresh data directory (0: none)"],
})
workers = alive_workers(s)
st.subheader("Workers")
if workers:
    st.table({"worker": [w.id for w in workers], "device": [w.device for w in workers],
              "job": [w.job_id or "-" for w in workers]})
else:
    st.warning("No worker is alive: queued jobs wait until one starts (`python -m jobs.worker`).")
st.caption(f"Python {platform.python_version()} on {platform.system()}")
