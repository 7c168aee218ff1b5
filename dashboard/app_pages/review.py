"""Review: a model's mistakes (or an unlabelled pool) from the database; correct, accept, mark, undo; retrain."""

import streamlit as st

from dashboard.state import (
    current_user,
    dataset_choices,
    diff_html,
    new_characters_notice,
    plain,
    select_model,
    settings,
    show_error,
)
from db import corrections
from db.catalog import edits_csv, image_file, kaggle_csv, splits_of
from db.review import SORTS, ReviewQuery, label_error_jobs, model_review, review_page, suspected_label_errors
from jobs import queue
from jobs.kinds.label_errors import FindLabelErrorsParams
from jobs.params import default
from ocr.curation import HARD_TO_READ, UNLIKELY_LABEL_P

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
mode = c3.radio("Show", ["mistakes", "unlabelled pool", "everything", "suspected label errors"], horizontal=True,
                key="review_mode")

# corrections since this model's training data was read, and retraining with them
since = corrections.edits_since(s, info.data_read_at)
c1, c2 = st.columns([2, 3])
c1.metric("Corrections since this model was trained", since)
if c2.button("Retrain with corrections (fine-tune from this model)", disabled=info.job_params is None, key="review_retrain"):
    try:
        new = queue.submit_retrain(s, model_id)
        st.success(f"Queued fine-tuning job {new}: follow it on the Train page.")
    except ValueError as exc:
        show_error(exc)

def act(fn, *args, **kwargs) -> None:
    try:
        result = fn(s, *args, **kwargs)
    except ValueError as exc:
        st.session_state["review_error"] = str(exc)
        return
    if isinstance(result, dict) and result.get("new_characters"):
        st.session_state["review_notice"] = new_characters_notice(result)


def show_image(col, path: str) -> None:
    resolved = image_file(s, path)
    if resolved.exists():
        col.image(str(resolved), width="stretch")
    else:
        col.warning(f"image missing: {path}")


def label_actions(col, sid: int, value: str, accept_label: str, can_accept: bool, accept) -> None:
    """The edit form of one sample (save / accept / unreadable / exclude / undo) and its history."""
    with col.form(f"fix-{sid}", border=False):
        new = st.text_input("Correct label", value=value, key=f"label-{sid}")
        b1, b2, b3, b4, b5 = st.columns(5)
        if b1.form_submit_button("Save"):
            act(corrections.correct_label, sid, new, user=current_user())
            st.rerun()
        if b2.form_submit_button(accept_label, disabled=not can_accept):
            accept()
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
        with col.expander(f"History ({len(history)} edits)"):
            st.dataframe([{"time": h["time"], "from": h["old_label"], "to": h["new_label"],
                           "status": f"{h['old_status']} -> {h['new_status']}", "by": h["user"] or "-",
                           "kind": h["source"]} for h in history], hide_index=True)


def export_section() -> None:

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
                           lambda: edits_csv(s, ds_name), file_name=f"label_edits_{ds_name}.csv",
                           mime="text/csv", key="export_edits")



def suspected_label_errors_view() -> None:
    """Labels scored out of fold (a find-label-errors job), likeliest error first, with their evidence."""
    st.caption("Each label is read by a model fine-tuned from this one on the other folds, so it never saw that "
               "label: the score is log P(its reading) - log P(the label). A high score that the start model agrees "
               "with is the likeliest error. Labels it doubts while less sure of its own reading than of nearly every "
               f"text it reads right (at most P {HARD_TO_READ:.1f}; the start model reads it otherwise) are listed "
               "apart as hard to read, unless it gives the label itself under 1 in "
               f"{1 / UNLIKELY_LABEL_P:.0f} a character: whatever the crop shows, that label is not it.")
    choices = dataset_choices(s)
    trained_on = [d for d in (info.job_params or {}).get("datasets", []) if d in choices]
    c1, c2, c3 = st.columns([3, 1, 1])
    chosen = c1.multiselect("Datasets to check", list(choices), default=trained_on or list(choices)[:1],
                            key="le_datasets")
    folds = c2.number_input("Folds", 2, 10, default(FindLabelErrorsParams, "folds"), key="le_folds")
    minutes = c3.number_input("Minutes of fine-tuning", 0.5, 600.0, default(FindLabelErrorsParams, "max_minutes"),
                              key="le_minutes")
    if st.button(f"Find label errors with model #{model_id}", key="le_start"):
        try:
            job_id = queue.submit(s, "find-label-errors", {"model": model_id, "datasets": chosen, "folds": int(folds),
                                                           "max_minutes": float(minutes)})
            st.success(f"Queued job {job_id}: its scores appear here when it finishes (progress on the Train page's "
                       "job list or `python -m jobs status`).")
        except ValueError as exc:
            show_error(exc)
    searches = {j["job_id"]: j for j in label_error_jobs(s)}
    if not searches:
        st.info("No search has finished yet.")
        return
    job_id = st.selectbox("Search", list(searches), key="le_job",
                          format_func=lambda j: f"job {j}: {searches[j]['scored']:,} labels scored")
    counts = {k: suspected_label_errors(s, job_id, page_size=1, hard_to_read=k == "hard to read")[1]
              for k in ("suspected errors", "hard to read")}
    hard = st.radio("List", list(counts), horizontal=True, key="le_list",
                    format_func=lambda k: f"{k} ({counts[k]:,})") == "hard to read"
    total = counts["hard to read" if hard else "suspected errors"]
    pages = max(1, -(-total // 20))
    what = "doubted without a sure reading: label, exclude or mark unreadable" if hard else "labels doubted"
    page = st.number_input(f"Page (of {pages}; {total:,} {what}, not yet settled)", 1, pages, 1,
                           key="le_page") - 1
    for r in suspected_label_errors(s, job_id, page=page, page_size=20, hard_to_read=hard)[0]:
        sid = r["sample_id"]
        with st.container(border=True):
            left, right = st.columns([2, 3])
            show_image(left, r["path"])
            start = (f" &nbsp; the start model reads **{plain(r['in_sample_reading'] or '(nothing)')}**"
                     + (" too" if r["agrees"] else ""))
            right.markdown(f"**label** {plain(r['current_label'])} &nbsp; **read out of fold** "
                           f"{plain(r['reading'] or '(nothing)')} (P {r['confidence']:.2f}) &nbsp; score "
                           f"{r['score']:.2f}{start}")
            right.markdown(diff_html(r["current_label"], r["reading"]), unsafe_allow_html=True)
            label_actions(right, sid, r["reading"] or r["current_label"], "Accept reading", bool(r["reading"]),
                          lambda sid=sid, text=r["reading"]: act(corrections.correct_label, sid, text,
                                                                 user=current_user()))


if notice := st.session_state.pop("review_notice", None):
    st.info(notice)
if err := st.session_state.pop("review_error", None):
    st.error(plain(err))
if mode == "suspected label errors":
    suspected_label_errors_view()
    export_section()
    st.stop()

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


for r in rows:
    sid = r["sample_id"]
    with st.container(border=True):
        left, right = st.columns([2, 3])
        show_image(left, r["path"])
        right.markdown(f"**label** {plain(r['current_label'] or '-')} &nbsp; **prediction** {plain(r['text'] or '(nothing)')} "
                       f"&nbsp; confidence {r['confidence']:.3f} &nbsp; status {r['status']}"
                       + (f" &nbsp; label-error score {r['label_error_score']:.2f}" if r["label_error_score"] else ""))
        right.markdown(diff_html(r["current_label"], r["text"]), unsafe_allow_html=True)
        label_actions(right, sid, r["current_label"] or r["text"], "Accept prediction", bool(r["text"]),
                      lambda sid=sid: act(corrections.accept_prediction, sid, model_id, user=current_user()))

export_section()
