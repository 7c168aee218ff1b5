"""Overview: the datasets, the best model, the running jobs, the worker, and what to do next."""

import pandas as pd
import streamlit as st

from dashboard.state import DEFAULT_DATASET, plain, pool_choices, settings
from db.catalog import dataset_counts
from db.models import WAITING
from db.registry import SHIPPED, default_model
from jobs.queue import alive_workers, list_jobs, submit
from ocr.pretrained import card_results
from ocr.training.config import SELF_TRAIN_SHARE

STARTER_DATASET = DEFAULT_DATASET
STARTER_POOL_MAX = 20_000  # reading a larger pool would take much of the starter's 5 minutes
s = settings()
st.title("Handwriting OCR")
st.caption("Train a CRNN on handwritten names, watch it learn, fix its mistakes, retrain.")


@st.fragment(run_every=2)
def live() -> None:
    workers = alive_workers(s)
    if workers:
        busy = ", ".join(f"{w.device} ({'job ' + str(w.job_id) if w.job_id else 'idle'})" for w in workers)
        st.success(f"Worker alive: {busy}", icon=":material/memory:")
    else:
        st.warning("No worker is alive: queued jobs wait until one starts (`python -m jobs.worker`).")
        if st.button("Start a worker", key="start_worker"):
            from jobs.control import start_worker

            start_worker(s)
            st.toast("worker starting (its log: data/logs/worker.log)")
    jobs = list_jobs(s, limit=20, statuses=WAITING)
    st.subheader("Running and queued jobs")
    if jobs:
        st.dataframe(pd.DataFrame([{"job": j["id"], "kind": j["kind"], "status": j["status"], "progress": j["progress"],
                                    "message": j["message"] or ""} for j in jobs]), hide_index=True,
                     column_config={"progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0)})
    else:
        st.caption("No job is running.")


live()

datasets = dataset_counts(s)
model = default_model(s)
shipped = model is not None and model.kind == SHIPPED
with st.container(border=True):
    st.markdown("**What to do next**")
    if not datasets:
        st.markdown("1. The default synthetic names are being generated (see the jobs above), or add your own data on "
                    "**Data** (Kaggle, a folder, a zip).")
    if model is None:
        st.markdown("2. Train a starter model below (one click), or choose datasets and settings on **Train**.")
    else:
        if shipped:
            st.markdown("- The model that ships with the project is the default: it reads at once. **Train your "
                        "own** below (one click) or on **Train**, on the built-in data or yours.")
        st.markdown("- **Draw** a name and see what the model reads.\n"
                    "- **Models**: evaluate it on a split (this stores its predictions), download the report.\n"
                    "- **Review** its mistakes, most likely label errors first; correct them and **Retrain with "
                    "corrections**.")
st.subheader("Datasets")
if datasets:
    st.dataframe(pd.DataFrame([{"dataset": d["name"], "source": d["source"], "usable": d["usable"],
                                **{k: d["status"].get(k, 0) for k in ("unlabelled", "unreadable", "empty", "excluded")},
                                "corrected": d["corrected"]} for d in datasets]), hide_index=True)
else:
    st.caption("No dataset yet.")

st.subheader("Best model")
if model is not None:
    m = model.metrics or {}
    cols = st.columns(3)
    cols[0].metric("model", f"#{model.id} {model.name}")
    cols[1].metric("validation exact match", f"{m.get('val_exact_match', float('nan')):.3f}")
    cols[2].metric("validation CER", f"{m.get('val_cer', float('nan')):.3f}")
    card = card_results(s.resolve(model.path)) if shipped else None
    if card:  # what it reads on real handwriting, as its card measured it
        cols = st.columns(3)
        cols[1].metric("real handwriting: exact match", f"{card['exact_match']:.3f}")
        cols[2].metric("real handwriting: CER", f"{card['cer']:.3f}" if card["cer"] is not None else "-")
        st.caption(plain(f"On {card['dataset']}, read with {card['decoder'] or 'its decoder'} (its model card, "
                         "README.md beside its weights); the figures above are greedy on its own validation rows."))
if model is None or shipped:
    if model is None:
        st.info("No model yet. Train a starter model on the built-in synthetic handwriting (about 5 minutes on a "
                "CPU); then test it by drawing a word, and review its mistakes.")
    pools = pool_choices(s)
    pooled = sum(pools.values())
    self_train = bool(pools) and pooled <= STARTER_POOL_MAX and st.checkbox(
        f"Also learn from the {pooled:,} unlabelled images ({', '.join(pools)}): self-training", value=True,
        key="starter_self_train", help="The last third of the 5 minutes fine-tunes on the readings of those images "
                                       "the first model is sure of (pseudo-labels, never written as labels).")
    if st.button("Train a starter model" if model is None else "Train your own model",
                 type="primary" if model is None else "secondary"):
        ids = []
        pending = [j for j in list_jobs(s, limit=1000, statuses=WAITING)
                   if j["kind"] == "synth" and j["params"].get("name") == STARTER_DATASET]
        if STARTER_DATASET not in [d["name"] for d in datasets] and not pending:
            ids.append(submit(s, "synth", {"n": 5000, "name": STARTER_DATASET, "seed": 0}))
        ids.append(submit(s, "train", {"datasets": [STARTER_DATASET], "config": {"max_minutes": 5.0, **(
            {"self_train": SELF_TRAIN_SHARE} if self_train else {})}, "unlabelled_datasets": list(pools) if self_train else []}))
        st.success(f"Queued job(s) {', '.join(map(str, ids))}: the running jobs above update every 2 seconds.")
