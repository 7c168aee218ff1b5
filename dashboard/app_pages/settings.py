"""Settings and about: who you are for the edit history, where the data and the database are, which folders an import
may read, the input limits, which device the worker uses."""

import os
import platform

import streamlit as st

from dashboard.state import current_user, default_user, login_configured, plain, settings
from jobs.queue import alive_workers
from ocr.limits import limits

s = settings()
st.title("Settings")

st.subheader("You")
if st.user.get("is_logged_in"):
    st.caption(plain(f"Signed in as {current_user()}: your edits are recorded under this name."))
else:
    def _keep_name() -> None:
        st.session_state["user_name"] = " ".join(st.session_state["user_name_input"].split())[:100]

    st.text_input("Your name, recorded with every label you change in this browser session", key="user_name_input",
                  value=st.session_state.get("user_name") or default_user(), on_change=_keep_name)
    st.caption(plain(f"Edits are recorded as {current_user()!r}.")
               + ("" if login_configured() else " Configure Streamlit's login to have names come from it."))

st.subheader("Environment")
st.caption("Set these with environment variables before starting the dashboard.")
st.table({
    "setting": ["HWR_DATA_DIR", "HWR_DATABASE_URL", "HWR_DEVICE", "HWR_START_WORKER", "HWR_DEFAULT_DATA",
                "HWR_IMPORT_ROOTS", "HWR_STORAGE_URL"],
    "value": [str(s.data_dir), s.redacted_url, os.environ.get("HWR_DEVICE", "auto"),
              os.environ.get("HWR_START_WORKER", "1"), os.environ.get("HWR_DEFAULT_DATA", "20000"),
              os.pathsep.join(str(r) for r in s.allowed_import_roots), s.storage_url or "(the data directory)"],
    "meaning": ["images, runs, logs and the SQLite file", "any SQLAlchemy URL (SQLite by default)",
                "device of the background worker (auto, cpu, cuda, cuda:N)", "0: do not start a worker",
                "synthetic names generated on a fresh data directory (0: none)",
                "folders a server-side import may read (the data directory, plus the folder the dashboard was "
                "started in unless set)",
                "where images, checkpoints, reports and logs live for workers on other machines (s3://bucket/prefix; "
                "the data directory is then this machine's cache of it)"],
})
st.subheader("Input limits")
lim = limits()
st.table({"limit": list(lim.describe()), "value": list(lim.describe().values())})
st.caption(f"Uploads: at most {st.get_option('server.maxUploadSize'):,} MB per file (server.maxUploadSize in "
           ".streamlit/config.toml).")
workers = alive_workers(s)
st.subheader("Workers")
if workers:
    st.table({"worker": [w.id for w in workers], "device": [w.device for w in workers],
              "job": [w.job_id or "-" for w in workers]})
else:
    st.warning("No worker is alive: queued jobs wait until one starts (`python -m jobs.worker`).")
st.caption(f"Python {platform.python_version()} on {platform.system()}")
