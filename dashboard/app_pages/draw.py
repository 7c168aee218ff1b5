"""Draw: write a word with the mouse or a pen; the model reads it as you draw. Add it to the training data."""

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas  # registers itself only inside a running app: import here

from dashboard.drawing import is_blank, to_image, to_png
from dashboard.state import current_user, decoder, load_recognizer, plain, select_model, settings, show_error
from db.catalog import add_drawn_sample
from ocr.alphabet import LabelRules
from ocr.decoding.decoder import DecoderConfig

s = settings()
st.title("Draw")
c1, c2, c3 = st.columns([3, 1, 1.3])
model_id = select_model(s, "draw_model", "No model yet: train one first (Overview has a one-click starter model).", c1)
pen = c2.slider("Pen width", 2, 16, 6, key="draw_pen")
use_lm = c3.toggle("Names LM", value=True, key="draw_lm",
                   help="A character language model of first names and surnames in the beam search: it prefers likely "
                        "spellings, and any word can still be read. A model whose character set grew beyond the names "
                        "set mixes it with a language model of its own training labels; one of another set (dates, "
                        "numbers, lower case) uses its training labels' alone. Off: the model's own beam search.")
st.caption("Write a name in capitals, like on a form. The toolbar under the canvas undoes, redoes and clears.")
canvas = st_canvas(stroke_width=pen, stroke_color="#1a1a1a", background_color="#ffffff", height=120, width=720,
                   drawing_mode="freedraw", return_image_data=True, key="draw_canvas")

data = canvas.image_data
if is_blank(data):
    st.info("Draw a word above: the prediction appears here.")
    st.stop()
image = to_image(data)
try:
    rec = load_recognizer(s, model_id)
except ValueError as exc:
    show_error(exc)
    st.stop()
arr = rec.prepare(image)
pred = rec.read_prepared([arr], decoder(rec.alphabet.chars, DecoderConfig(beam=10, lm="names" if use_lm else None),
                                      f"{rec.path}:{rec.path.stat().st_mtime}", rec.checkpoint.get("training_labels")))[0]
c1, c2 = st.columns([2, 3])
c1.metric("Prediction", pred.text or "(nothing)", f"confidence {pred.confidence:.2f}", delta_color="off")
c1.caption("What the model sees (same preprocessing as training):")
c1.image((255 * (1 - np.clip(arr, 0, 1))).astype(np.uint8), clamp=True)
c2.caption(f"Model #{model_id} writes {plain(rec.alphabet.describe())}; a label with other characters is saved, and "
           "the next training adds them to its set.")
c2.dataframe([{"candidate": t, "model probability": round(p, 4)} for t, p in pred.candidates], hide_index=True)
if use_lm:
    c2.caption("Ranked with the names language model; the probabilities are the model's own, P(text | image).")

if st.session_state.get("draw_label_source") != pred.text:  # a new drawing: prefill with its reading
    st.session_state["draw_label_source"] = st.session_state["draw_label"] = pred.text
with st.form("add-drawing"):
    label = st.text_input("Label", key="draw_label")
    if st.form_submit_button("Add to training data"):
        try:
            sid = add_drawn_sample(s, to_png(image), label, user=current_user(), rules=LabelRules.of_model(rec.alphabet))
            st.success(f"Saved as sample {sid} in dataset 'drawn': include it in the next training job.")
        except ValueError as exc:
            show_error(exc)
