"""What every page shares: the settings, the background worker (started once per server process), choices of
datasets and models, and loaded models (cached)."""

from __future__ import annotations

import html
import os
from difflib import SequenceMatcher
from pathlib import Path

import streamlit as st

from db.settings import Settings


def settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(show_spinner=False)
def _worker_process(data_dir: str, url: str, device: str):
    from jobs.control import ensure_worker

    return ensure_worker(Settings(data_dir=Path(data_dir), database_url=url), device)


def ensure_background_worker() -> None:
    """Start ``python -m jobs.worker`` unless one is alive (``HWR_START_WORKER=0`` turns this off, e.g. in tests)."""
    if os.environ.get("HWR_START_WORKER", "1") == "0":
        return
    s = settings()
    _worker_process(str(s.data_dir), s.database_url, os.environ.get("HWR_DEVICE", "auto"))


def dataset_choices(s: Settings) -> dict[str, int]:
    from db.catalog import dataset_counts

    return {d["name"]: d["id"] for d in dataset_counts(s)}


def model_choices(s: Settings) -> dict[str, int]:
    """'#id name (epoch, val CER)' -> id, newest first, the default model first."""
    from db.registry import default_model, list_models

    default = default_model(s)
    out = {}
    models = list_models(s)
    models.sort(key=lambda m: (default is None or m.id != default.id, -m.id))
    for m in models:
        cer = (m.metrics or {}).get("val_cer")
        out[f"#{m.id} {m.name}" + (f" (epoch {m.epoch}, val CER {cer:.3f})" if cer is not None else "")] = m.id
    return out


@st.cache_resource(show_spinner="loading the model", max_entries=4)
def recognizer(path: str, mtime: float):
    """A loaded model, cached per checkpoint file version."""
    from ocr.recognize import Recognizer

    return Recognizer(path, device="cpu")


@st.cache_resource(show_spinner="loading the names language model (the first time: ~20 s)")
def names_fusion(alphabet_chars: str):
    """Beam search with the character language model of names (``ocr.charlm``), shared by every page and session."""
    from ocr.alphabet import Alphabet
    from ocr.charlm import CharLM
    from ocr.decode import Fusion

    return Fusion(CharLM.names(Alphabet(alphabet_chars)))


def require_models(s: Settings, hint: str) -> dict[str, int]:
    """``model_choices``, or ``hint`` and the end of the page when there is no model yet."""
    models = model_choices(s)
    if not models:
        st.info(hint)
        st.stop()
    return models


def load_recognizer(s: Settings, model_id: int):
    from db.registry import model_file

    path = model_file(s, model_id)
    return recognizer(str(path), path.stat().st_mtime)


def diff_html(label: str | None, prediction: str) -> str:
    """Label vs prediction, character by character: missing characters struck through in red, extra ones green."""
    label = label or ""

    def text(t: str) -> str:
        return html.escape(t).replace(" ", "&nbsp;")

    out = []
    for op, a0, a1, b0, b1 in SequenceMatcher(None, label, prediction, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(text(label[a0:a1]))
        if op in ("delete", "replace"):
            out.append(f'<del style="background:#fdd">{text(label[a0:a1])}</del>')
        if op in ("insert", "replace"):
            out.append(f'<ins style="background:#dfd;text-decoration:none">{text(prediction[b0:b1])}</ins>')
    return f'<code style="font-size:1.1em">{"".join(out)}</code>'


def show_error(exc: Exception) -> None:
    st.error(str(exc), icon=":material/error:")


DEFAULT_DATASET = "synthetic-default"


def ensure_default_data() -> None:
    """On a fresh data directory, queue the embedded default data: ``HWR_DEFAULT_DATA`` synthetic names (20,000;
    0 turns it off). Its progress shows on the Overview."""
    n = int(os.environ.get("HWR_DEFAULT_DATA", "20000"))
    if n > 0:
        s = settings()
        _queue_default_data(str(s.data_dir), s.database_url, n)


@st.cache_resource(show_spinner=False)
def _queue_default_data(data_dir: str, url: str, n: int) -> int | None:
    from db.catalog import dataset_counts
    from jobs.queue import list_jobs, submit

    s = Settings(data_dir=Path(data_dir), database_url=url)
    if dataset_counts(s) or any(j["kind"] == "synth" for j in list_jobs(s, limit=1000)):
        return None
    return submit(s, "synth", {"n": n, "name": DEFAULT_DATASET, "seed": 0})
