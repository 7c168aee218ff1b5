"""``streamlit run dashboard/app.py``: routes the pages and makes sure a background worker is running."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the project
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.state import (  # noqa: E402
    ensure_background_worker,
    ensure_default_data,
    listens_beyond_this_machine,
    login_configured,
    storage_problem,
    warn_open_server,
)

st.set_page_config(page_title="Handwriting OCR", page_icon=":material/draw:", layout="wide")
if login_configured() and not st.user.get("is_logged_in"):
    st.title("Handwriting OCR")
    st.button("Log in", on_click=st.login, type="primary")
    st.stop()
if listens_beyond_this_machine() and not login_configured():
    warn_open_server()
    st.warning(f"This dashboard listens on {st.get_option('server.address') or 'every network interface'} without a "
               "login: anyone who can reach it can import server files, edit labels and start jobs. Bind it to "
               "127.0.0.1, or configure Streamlit's login ([auth] in .streamlit/secrets.toml).", icon=":material/warning:")
if problem := storage_problem():
    st.error(f"{problem}. Set HWR_STORAGE_URL (and the store's credentials) right, then restart the dashboard.",
             icon=":material/cloud_off:")
    st.stop()
ensure_background_worker()
ensure_default_data()
PAGES = ROOT / "dashboard" / "app_pages"
pages = [
    st.Page(PAGES / "overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page(PAGES / "data.py", title="Data", icon=":material/database:"),
    st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:"),
    st.Page(PAGES / "review.py", title="Review", icon=":material/rule:"),
    st.Page(PAGES / "label.py", title="Label next", icon=":material/keyboard:"),
    st.Page(PAGES / "draw.py", title="Draw", icon=":material/draw:"),
    st.Page(PAGES / "models.py", title="Models", icon=":material/deployed_code:"),
    st.Page(PAGES / "settings.py", title="Settings", icon=":material/settings:"),
]
st.navigation(pages).run()
