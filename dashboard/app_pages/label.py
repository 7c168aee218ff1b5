"""Label next: the unlabelled pool in the order a label helps most (uncertain first, diverse), keyboard first:
the model's reading pre-filled, Enter saves, Esc skips, Alt+U marks unreadable; the next image is already loaded."""

import streamlit as st
from streamlit_shortcuts import add_shortcuts

from dashboard.state import current_user, new_characters_notice, plain, pool_choices, select_model, settings, show_error
from db import corrections
from db.catalog import dataset_id, image_file
from db.review import label_queue
from jobs import queue

s = settings()
st.title("Label next")
c1, c2 = st.columns([3, 2])
model_id = select_model(s, "label_model", "No model yet: train one first (Overview has a one-click starter model).", c1)
pools = pool_choices(s)
if not pools:
    st.info("No dataset has images without a label: import a folder of images on the Data page.")
    st.stop()
chosen = c2.multiselect("Pool", list(pools), key="label_pools", placeholder="every dataset with unlabelled images",
                        help=", ".join(f"{name}: {n:,} without a label" for name, n in pools.items()))
chosen = chosen or list(pools)
skipped: set = st.session_state.setdefault("label_skipped", set())
items, read = label_queue(s, model_id, [dataset_id(s, n) for n in chosen], size=2, skip=frozenset(skipped))
waiting = sum(pools[n] for n in chosen) - read - len(skipped)
done = st.session_state.get("label_done", 0)
m1, m2, m3 = st.columns(3)
m1.metric("Labelled in this session", done)
m2.metric("Left in the queue", read)
m3.metric("Not read by this model yet", max(0, waiting))
if waiting > 0 and st.button(f"Read the pool with model #{model_id} (names language model)", key="label_read"):
    try:
        ids = [queue.submit(s, "predict", {"model": model_id, "dataset": n, "lm": True}) for n in chosen]
        st.success(f"Queued predict job(s) {', '.join(map(str, ids))}: the queue fills as they finish.")
    except ValueError as exc:
        show_error(exc)
r1, r2 = st.columns([2, 3])
r2.caption("Labels go into the dataset with the audit trail (Review shows each one's history). Retraining fine-tunes "
           f"from model #{model_id} on its training data plus the labelled images of the pool "
           f"({queue.RETRAIN['max_minutes']:g} minutes); if it was trained with self-training, #{model_id} reads the "
           "unlabelled images again and the whole run trains on labels + its readings.")
if r1.button("Retrain with new labels", key="label_retrain"):
    try:
        st.success(f"Queued fine-tuning job {queue.submit_retrain(s, model_id, chosen)}: follow it on the Train page.")
    except ValueError as exc:
        show_error(exc)
if not items:
    st.info("Nothing to label: the pool has no reading by this model yet, or every image is labelled or skipped.")
    st.stop()

current = items[0]
sid = current["sample_id"]


def record(fn, *args) -> None:
    try:
        result = fn(s, sid, *args, user=current_user())
        st.session_state["label_done"] = st.session_state.get("label_done", 0) + 1
        if result.get("new_characters"):
            st.session_state["label_notice"] = new_characters_notice(result)
    except ValueError as exc:
        st.session_state["label_error"] = str(exc)


if notice := st.session_state.pop("label_notice", None):
    st.info(notice)
if err := st.session_state.pop("label_error", None):
    st.error(plain(err))
left, right = st.columns([3, 2])
path = image_file(s, current["path"])
if path.exists():
    left.image(str(path), width="stretch")
else:
    left.warning(f"image missing: {current['path']}")
right.markdown(f"model reads **{plain(current['text'] or '(nothing)')}** with P {current['confidence']:.2f}")
if current["runner_up"] is not None:
    right.caption(f"or **{plain(current['runner_up'] or '(nothing)')}**: margin {current['margin']:.2f} between the two")
with right.form("label-next", border=False):
    label = st.text_input("Label (Enter saves)", value=current["text"], key=f"label-next-{sid}")
    if st.form_submit_button("Save", type="primary", key="label_save"):
        record(corrections.correct_label, label)
        st.rerun()
b1, b2 = right.columns(2)
if b1.button("Skip `Esc`", key="label_skip"):
    skipped.add(sid)
    st.rerun()
if b2.button("Unreadable `Alt+U`", key="label_unreadable"):
    record(corrections.set_status, "unreadable")
    st.rerun()
add_shortcuts(label_skip="escape", label_unreadable="alt+u")
if len(items) > 1:
    nxt = image_file(s, items[1]["path"])
    if nxt.exists():
        right.caption("next")
        right.image(str(nxt), width=160)  # loaded now, so it shows at once after this one
