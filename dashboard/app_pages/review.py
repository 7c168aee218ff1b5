"""Review: a model's mistakes (or an unlabelled pool) from the database; correct, accept, mark, undo; retrain."""

import streamlit as st

from dashboard.state import current_user, dataset_choices, diff_html, plain, select_model, settings, show_error
from db import corrections
from db.catalog import kaggle_csv, splits_of
from db.review import SORTS, ReviewQuery, model_review, review_page
from jobs import queue

s = settings()
st.title("Review")
c1, c2, c3 = st.columns([3, 2, 2])
model_id = select_model(s, "review_model", "No model yet: train one on the Train page (or from the Overview), then "
                                           "evaluate it on the Models page.", c1)
info = model_review(s, model_id)
splits = info.splits
if not splits:
    st.info("This model has no stored predictions yet: run an evaluation on the Models page.")
    st.stop()
split = c2.selectbox("Split", splits, key="review_split")
mode = c3.radio("Show", ["mistakes", "unlabelled pool", "everything"], horizontal=True, key="review_mode")

# corrections since this model's training data was read, and retraining with them
since = corrections.edits_since(s, info.data_read_at)
c1, c2 = st.columns([2, 3])
c1.metric("Corrections since this model was trained", since)
if c2.button("Retrain with corrections (fine-tune from this model)", disabled=info.job_params is None, key="review_retrain"):
    try:
        params = info.job_params
        new = queue.submit(s, "train", {"datasets": params["datasets"], "splits": params.get("splits"),
                                        "val_datasets": params.get("val_datasets", []), "init_model": model_id,
                                        "config": {**params.get("config", {}), "epochs": 10, "max_minutes": 5.0,
                                                   "lr": 5e-4}})
        st.success(f"Queued fine-tuning job {new}: follow it on the Train page.")
    except ValueError as exc:
        show_error(exc)

with st.expander("Filters and sorting", expanded=False):
    f1, f2, f3 = st.columns(3)
    text = f1.text_input("Label or prediction contains", key="review_text")
    length = f2.slider("Label length", 0, 40, (0, 40), key="review_length")
    conf = f3.slider("Confidence", 0.0, 1.0, (0.0, 1.0), key="review_conf")
    f1, f2, f3 = st.columns(3)
    dist = f1.slider("Edit distance", 0, 40, (0, 40), key="review_dist")
    sort = f2.selectbox("Sort by", SORTS, index=0, key="review_sort",
                        format_func=lambda k: {"lowest_confidence": "lowest confidence",
                                               "highest_edit_distance": "highest edit distance",
                                               "label_error": "most likely label error", "sample": "sample"}[k])
    page_size = f3.selectbox("Per page", [10, 20, 50], index=1, key="review_page_size")

query = ReviewQuery(model_id=model_id, split=split, only_wrong=mode == "mistakes", unlabelled=mode == "unlabelled pool",
                    text=text, min_length=length[0] or None, max_length=None if length[1] == 40 else length[1],
                    min_confidence=conf[0] or None, max_confidence=None if conf[1] == 1.0 else conf[1],
                    min_edit_distance=dist[0] or None, max_edit_distance=None if dist[1] == 40 else dist[1],
                    sort="lowest_confidence" if mode == "unlabelled pool" and sort == "label_error" else sort)
total = review_page(s, query, page_size=1)[1]
pages = max(1, -(-total // page_size))
page = st.number_input(f"Page (of {pages}; {total:,} samples)", 1, pages, 1, key="review_page") - 1
rows, _ = review_page(s, query, page=page, page_size=page_size)


def act(fn, *args, **kwargs) -> None:
    try:
        fn(s, *args, **kwargs)
    except ValueError as exc:
        st.session_state["review_error"] = str(exc)


if err := st.session_state.pop("review_error", None):
    st.error(plain(err))
for r in rows:
    sid = r["sample_id"]
    with st.container(border=True):
        left, right = st.columns([2, 3])
        path = s.resolve(r["path"])
        if path.exists():
            left.image(str(path), width="stretch")
        else:
            left.warning(f"image missing: {r['path']}")
        right.markdown(f"**label** {plain(r['current_label'] or '-')} &nbsp; **prediction** {plain(r['text'] or '(nothing)')} "
                       f"&nbsp; confidence {r['confidence']:.3f} &nbsp; status {r['status']}"
                       + (f" &nbsp; label-error score {r['label_error_score']:.2f}" if r["label_error_score"] else ""))
        right.markdown(diff_html(r["current_label"], r["text"]), unsafe_allow_html=True)
        with right.form(f"fix-{sid}", border=False):
            new = st.text_input("Correct label", value=r["current_label"] or r["text"], key=f"label-{sid}")
            b1, b2, b3, b4, b5 = st.columns(5)
            if b1.form_submit_button("Save"):
                act(corrections.correct_label, sid, new, user=current_user())
                st.rerun()
            if b2.form_submit_button("Accept prediction", disabled=not r["text"]):
                act(corrections.accept_prediction, sid, model_id, user=current_user())
                st.rerun()
            if b3.form_submit_button("Unreadable"):
                act(corrections.set_status, sid, "unreadable", user=current_user())
                st.rerun()
            if b4.form_submit_button("Exclude"):
                act(corrections.set_status, sid, "excluded", user=current_user())
                st.rerun()
            if b5.form_submit_button("Undo"):
                act(corrections.undo_last, sid, user=current_user())
                st.rerun()
        history = corrections.history(s, sid)
        if history:
            with right.expander(f"History ({len(history)} edits)"):
                st.dataframe([{"time": h["time"], "from": h["old_label"], "to": h["new_label"],
                               "status": f"{h['old_status']} -> {h['new_status']}", "by": h["user"] or "-",
                               "kind": h["source"]} for h in history], hide_index=True)

st.divider()
st.subheader("Export the current labels (Kaggle CSV)")
datasets = dataset_choices(s)
if datasets:
    c1, c2 = st.columns(2)
    ds_name = c1.selectbox("Dataset", list(datasets), key="export_dataset")
    ds_split = c2.selectbox("Split", splits_of(s, datasets[ds_name]), key="export_split")
    st.download_button("Download CSV", lambda: kaggle_csv(s, ds_name, ds_split),  # built when clicked
                       file_name=f"written_name_{ds_split}_v2.csv", mime="text/csv", key="export_csv")
    st.download_button("Download the edit history (CSV: who changed which label, when)",
                       lambda: corrections.edits_csv(s, ds_name), file_name=f"label_edits_{ds_name}.csv",
                       mime="text/csv", key="export_edits")
