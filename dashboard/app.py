"""``streamlit run dashboard/app.py``: routes the pages and makes sure a background worker is running."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the project
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.state import ensure_background_worker  # noqa: E402

st.set_page_config(page_title="Handwriting OCR", page_icon=":material/draw:", layout="wide")
ensure_background_worker()
pages = [
    st.Page(ROOT / "dashboard" / "app_pages" / "overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page(ROOT / "dashboard" / "app_pages" / "settings.py", title="Settings", icon=":material/settings:"),
]
st.navigation(pages).run()
