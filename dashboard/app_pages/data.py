"""Data: import (Kaggle API, a local folder, an uploaded zip), generate synthetic names, browse samples."""

import json
import os
import re
import uuid

import pandas as pd
import streamlit as st

from dashboard.state import dataset_choices, plain, settings, show_error
from db.catalog import browse, image_file, slug, splits_of
from jobs import queue
from jobs.kinds.synth import MAX_N, SynthParams
from jobs.params import default
from ocr.data.kaggle import DATASET
from ocr.data.synth import KINDS as SYNTH_KINDS

s = settings()
st.title("Data")


def label_options(form: str) -> dict:
    """How the labels of a folder or zip are read: the Kaggle names forms' by default."""
    c1, c2, c3 = st.columns([2, 1, 1])
    charset = c1.selectbox("Labels may use", ["names", "digits", "latin", "any"], key=f"{form}_charset",
                           format_func=lambda c: {"names": "names: A-Z, space, - and ' (Kaggle)",
                                                  "digits": "digits: numbers, dates, postcodes",
                                                  "latin": "latin: letters of both cases, accents, digits, punctuation",
                                                  "any": "any character (not control characters or emoji)"}[c],
                           help="labels with other characters are kept apart as excluded, with the reason")
    upper = c2.checkbox("Upper-case labels", value=True, key=f"{form}_upper")
    strip = c3.checkbox("Strip accents", value=False, key=f"{form}_strip", help="é -> e, ß -> ss")
    return {"charset": charset, "upper": upper, "strip_accents": strip}


def queue_import(values: dict, secrets: dict[str, str] | None = None) -> None:
    try:
        job_id = queue.submit(s, "import", values, secrets=secrets)
        st.success(f"Queued import job {job_id}: progress below.")
    except ValueError as exc:
        show_error(exc)


kaggle_tab, folder_tab, upload_tab, synth_tab = st.tabs(["Kaggle", "Local folder", "Upload a zip", "Synthetic"])
with kaggle_tab:
    with st.form("kaggle", clear_on_submit=True):  # the key does not stay in the browser session
        st.caption("Downloads `landlord/handwriting-recognition` (about 1.3 GB) with the Kaggle API. Leave the fields "
                   "empty to use KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json. Credentials are handed to the "
                   "job in a private file that it deletes; they are never stored in the database or shown again.")
        c1, c2, c3 = st.columns(3)
        user = c1.text_input("Kaggle username", key="kaggle_user")
        key = c2.text_input("Kaggle API key", type="password", key="kaggle_key")
        name = c3.text_input("Dataset name", value="kaggle", key="kaggle_name")
        if st.form_submit_button("Download and import"):
            secrets = None
            if user.strip() and key.strip():
                secrets = {"kaggle.json": json.dumps({"username": user.strip(), "key": key.strip()})}
            queue_import({"path": str(s.data_dir / "datasets" / slug(name)), "name": name, "source": "kaggle",
                          "kaggle_dataset": DATASET}, secrets)

with folder_tab:
    with st.form("folder"):
        c1, c2 = st.columns([3, 1])
        path = c1.text_input("Folder or zip in Kaggle layout (written_name_*_v2.csv + images), or a folder of "
                             "unlabelled images", key="folder_path")
        name = c2.text_input("Dataset name", key="folder_name")
        rules = label_options("folder")
        if st.form_submit_button("Import"):
            if not path.strip():
                st.error("give the path of a folder or zip on the server")
            else:
                queue_import({"path": path.strip(), "name": name.strip() or slug(os.path.basename(path.strip())),
                              "source": "kaggle", **rules})

with upload_tab:
    with st.form("upload"):
        upload = st.file_uploader("A zip in Kaggle layout", type=["zip"], key="upload_zip")
        name = st.text_input("Dataset name", key="upload_name")
        rules = label_options("upload")
        if st.form_submit_button("Upload and import"):
            if upload is None:
                st.error("choose a zip file first")
            else:
                folder = s.data_dir / "uploads"
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"{uuid.uuid4().hex[:8]}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', upload.name)}"
                target.write_bytes(upload.getbuffer())
                queue_import({"path": str(target), "name": name.strip() or slug(upload.name.removesuffix(".zip")),
                              "source": "upload", **rules})

with synth_tab:
    with st.form("synth"):
        c1, c2, c3, c4 = st.columns(4)
        kind = c1.selectbox("Fields", SYNTH_KINDS, key="synth_kind",
                            help="names: upper-case names as on the Kaggle forms (accents left out of the label); "
                                 "capitals: the same names with their accents kept; dates (numeric), numbers "
                                 "(postcodes, phone numbers, amounts), words (lower and mixed case, accents kept), "
                                 "or mixed: capitals, dates, numbers and words")
        n = c2.number_input("Images", 10, MAX_N, 20_000, key="synth_n")
        name = c3.text_input("Dataset name", value="synthetic", key="synth_name")
        seed = c4.number_input("Seed", 0, 2**31 - 1, default(SynthParams, "seed"), key="synth_seed")
        if st.form_submit_button("Generate"):
            try:
                job_id = queue.submit(s, "synth", {"n": int(n), "name": name, "seed": int(seed), "kind": kind})
                st.success(f"Queued synthetic data job {job_id}.")
            except ValueError as exc:
                show_error(exc)


@st.fragment(run_every=2)
def data_jobs() -> None:
    jobs = [j for j in queue.list_jobs(s, limit=30) if j["kind"] in ("import", "synth")]
    if jobs:
        st.dataframe(pd.DataFrame([{"job": j["id"], "kind": j["kind"], "dataset": j["params"].get("name"),
                                    "status": j["status"], "progress": j["progress"], "message": j["message"] or "",
                                    "error": j["error"] or ""} for j in jobs[:8]]), hide_index=True,
                     column_config={"progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0)})


st.subheader("Import jobs")
data_jobs()

st.subheader("Browse")
datasets = dataset_choices(s)
if not datasets:
    st.info("No dataset yet: import one or generate synthetic names above.")
    st.stop()
c1, c2, c3, c4 = st.columns(4)
ds = datasets[c1.selectbox("Dataset", list(datasets), key="browse_dataset")]
split = c2.selectbox("Split", ["all", *splits_of(s, ds)], key="browse_split")
status = c3.selectbox("Status", ["all", "ok", "unlabelled", "unreadable", "empty", "excluded"], key="browse_status")
text = c4.text_input("Label contains", key="browse_text")
page_size = 24
_, total = browse(s, ds, None if split == "all" else split, None if status == "all" else status, text, 0, 1)
pages = max(1, -(-total // page_size))
page = st.number_input(f"Page (of {pages}; {total:,} samples)", 1, pages, 1, key="browse_page") - 1
rows, _ = browse(s, ds, None if split == "all" else split, None if status == "all" else status, text, page, page_size)
cols = st.columns(4)
for i, r in enumerate(rows):
    path = image_file(s, r["path"])
    caption = plain(f"#{r['id']} {r['label'] or '-'} ({r['status']}, {r['split']})")
    if path.exists():
        cols[i % 4].image(str(path), caption=caption, width="stretch")
    else:
        cols[i % 4].warning(f"{caption}: image missing")
