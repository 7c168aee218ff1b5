"""``streamlit run dashboard/app.py``: routes the pages and makes sure a background worker is running."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the project
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.state import ensure_background_worker, ensure_default_data  # noqa: E402

st.set_page_config(page_title="Handwriting OCR", page_icon=":material/draw:", layout="wide")
ensure_background_worker()
ensure_default_data()
PAGES = ROOT / "dashboard" / "app_pages"
pages = [
    st.Page(PAGES / "overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page(PAGES / "data.py", title="Data", icon=":material/database:"),
    st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:"),
    st.Page(PAGES / "review.py", title="Review", icon=":material/rule:"),
    st.Page(PAGES / "draw.py", title="Draw", icon=":material/draw:"),
    st.Page(PAGES / "models.py", title="Models", icon=":material/deployed_code:"),
    st.Page(PAGES / "settings.py", title="Settings", icon=":material/settings:"),
]
st.navigation(pages).run()
