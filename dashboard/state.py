"""What every page shares: the settings, the background worker (started once per server process), choices of
datasets and models, and loaded models (cached)."""

from __future__ import annotations

import html
import os
import re
from difflib import SequenceMatcher
from pathlib import Path

import streamlit as st

from db.settings import Settings
from db.storage import StorageError, Store


def settings() -> Settings:
    return Settings.from_env()


@st.cache_data(ttl=60, show_spinner=False)
def _store_problem(url: str, data_dir: str) -> str | None:
    try:
        Store(url, Path(data_dir)).check()
    except StorageError as exc:
        return str(exc)
    return None


def storage_problem() -> str | None:
    """Why the storage URL cannot be used (an unknown scheme, a missing bucket, wrong credentials), the bucket checked
    once a minute; None when it can (or there is none: the data directory)."""
    try:
        s = settings()
    except StorageError as exc:
        return str(exc)
    return _store_problem(s.storage_url, str(s.data_dir)) if s.storage_url else None


LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")


def login_configured() -> bool:
    """Whether Streamlit's OIDC login is set up (an ``[auth]`` section in ``.streamlit/secrets.toml``)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all
        return False


def listens_beyond_this_machine() -> bool:
    """True when the server binds anything but the loopback address (Streamlit binds every interface when unset)."""
    return (st.get_option("server.address") or "") not in LOCAL_ADDRESSES


@st.cache_resource(show_spinner=False)
def warn_open_server() -> None:
    """Said once per server process, on its log, as loudly as a log can."""
    import sys

    address = st.get_option("server.address") or "every network interface (0.0.0.0)"
    print("\n" + "!" * 100 + f"\n  WARNING: this dashboard listens on {address} WITHOUT A LOGIN.\n"
          "  Anyone who can reach it can import files from this server, edit labels and start jobs.\n"
          "  Use --server.address 127.0.0.1 or configure Streamlit's login ([auth] in .streamlit/secrets.toml).\n"
          + "!" * 100 + "\n", file=sys.stderr, flush=True)


def default_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def current_user() -> str:
    """Who makes an edit in this browser session: the signed-in user (Streamlit's ``st.user``) when login is
    configured, else the name given on Settings, else the OS user running the dashboard."""
    if st.user.get("is_logged_in"):
        return str(st.user.get("email") or st.user.get("name") or st.user.get("sub") or "signed-in user")[:100]
    return st.session_state.get("user_name") or default_user()


@st.cache_resource(show_spinner=False)
def _dashboard_worker(data_dir: str, url: str, device: str):
    """One per server process: this dashboard's presence file and the worker it starts."""
    from jobs.control import DashboardWorker, register_dashboard

    s = Settings(data_dir=Path(data_dir), database_url=url)
    register_dashboard(s)
    return DashboardWorker(s, device)


def ensure_background_worker() -> None:
    """Start ``python -m jobs.worker`` unless one is alive, and again when it died (reaped, never left a zombie);
    ``HWR_START_WORKER=0`` turns this off, e.g. in tests. Checked at most every 5 s."""
    if os.environ.get("HWR_START_WORKER", "1") == "0":
        return
    s = settings()
    _dashboard_worker(str(s.data_dir), s.database_url, os.environ.get("HWR_DEVICE", "auto")).ensure(every=5.0)


def dataset_choices(s: Settings) -> dict[str, int]:
    from db.catalog import dataset_counts

    return {d["name"]: d["id"] for d in dataset_counts(s)}


def pool_choices(s: Settings) -> dict[str, int]:
    """Datasets with images that have no label yet (a self-training pool): name -> how many."""
    from db.catalog import dataset_counts

    return {d["name"]: d["status"]["unlabelled"] for d in dataset_counts(s) if d["status"].get("unlabelled")}


def model_choices(s: Settings) -> dict[int, str]:
    """id -> '#id name', the default model first, then newest first. A label never changes while its job trains (the
    metrics are in ``model_summary``): a selectbox keeps its choice by label, and would lose it at the next epoch."""
    from db.registry import default_model, list_models

    default = default_model(s)
    models = list_models(s)
    models.sort(key=lambda m: (default is None or m.id != default.id, -m.id))
    return {m.id: f"#{m.id} {m.name}" for m in models}


def model_summary(s: Settings, model_id: int) -> str:
    """'epoch 4 · val CER 0.123 · default' for a caption under a model picker."""
    from db.registry import default_model, get_model

    m = get_model(s, model_id)
    cer = (m.metrics or {}).get("val_cer")
    default = default_model(s)
    parts = [f"epoch {m.epoch}" if m.epoch is not None else None, f"val CER {cer:.3f}" if cer is not None else None,
             "default" if default is not None and default.id == m.id else None]
    return " · ".join(p for p in parts if p) or m.path


def select_model(s: Settings, key: str, hint: str, where=st) -> int:
    """The page's model picker (``hint`` and the end of the page when there is no model yet); the chosen model stays
    chosen while training jobs add models and update theirs."""
    models = model_choices(s)
    if not models:
        st.info(hint)
        st.stop()
    model_id = where.selectbox("Model", list(models), key=key, format_func=lambda i: models.get(i, f"#{i}"))
    where.caption(plain(model_summary(s, model_id)))
    return model_id


@st.cache_resource(show_spinner="loading the model", max_entries=4)
def recognizer(path: str, mtime: float):
    """A loaded model, cached per checkpoint file version."""
    from ocr.recognize import Recognizer

    return Recognizer(path, device="cpu")


@st.cache_resource(show_spinner="loading the names language model (the first time: ~20 s)")
def decoder(alphabet_chars: str, config, model_key: str = "", _training_labels: dict | None = None):
    """An ``ocr.decoding.decoder.Decoder`` for the pages (the language model loaded once, shared by every page and session).
    A model whose character set the names LM does not fit reads with the LM of its own training labels
    (``_training_labels``, not hashed: ``model_key`` names the checkpoint version they come from)."""
    from ocr.alphabet import Alphabet
    from ocr.decoding.decoder import Decoder

    return Decoder(config, Alphabet(alphabet_chars), _training_labels)


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


_MARKDOWN_SIGNIFICANT = re.compile(r"([!-/:-@\[-`{-~])")
_AUTOLINK_PARTS = re.compile(r"([:.@])|(?=www)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """``text`` for a Streamlit element that renders Markdown (captions, alerts, ``st.markdown``), shown as typed:
    every ASCII punctuation character is backslash-escaped (CommonMark allows it for all of them), so a label such as
    ``[X](HTTPS://EVIL.EXAMPLE)`` is no link, no HTML, no ``:color[...]`` directive, no math. GitHub-flavoured
    autolinks (``https://...``, ``www....``, ``a@b.c``) are found in the text after escapes are undone, so an invisible
    word joiner (U+2060) follows every ``:``, ``.`` and ``@`` and precedes ``www``; line breaks become spaces."""
    text = _AUTOLINK_PARTS.sub(lambda m: (m.group(1) or "") + WORD_JOINER, " ".join(str(text).splitlines()))
    return _MARKDOWN_SIGNIFICANT.sub(r"\\\1", text)


def show_error(exc: Exception) -> None:
    st.error(plain(exc), icon=":material/error:")


def new_characters_notice(result: dict) -> str:
    """What a correction with characters its dataset never had means (``db.corrections.new_characters``)."""
    chars = " ".join(f"'{c}'" for c in result["new_characters"])
    return plain(f"Saved {result['label']!r}. New character(s) for this dataset: {chars}. The next training adds them "
                 "to the model's character set (a fine-tune from a model grows it; its other characters keep "
                 "their weights).")


DEFAULT_DATASET = "synthetic-default"
DEFAULT_POOL = "synthetic-pool"


def ensure_default_data() -> None:
    """On a fresh data directory, register the starter model that ships with the project as the default model when
    there is no model yet (``HWR_STARTER_MODEL=0`` leaves it out), and queue the embedded default data:
    ``HWR_DEFAULT_DATA`` synthetic names (20,000; 0 turns it off; its progress shows on the Overview), a tenth as many
    unlabelled (a pool), and the starter's first turn of the loop on them."""
    n = int(os.environ.get("HWR_DEFAULT_DATA", "20000"))
    s = settings()
    starter = None
    if os.environ.get("HWR_STARTER_MODEL", "1") != "0":
        starter = _register_starter(str(s.data_dir), s.database_url)
    if n > 0:
        _queue_default_data(str(s.data_dir), s.database_url, n, starter)


@st.cache_resource(show_spinner=False)
def _register_starter(data_dir: str, url: str) -> int | None:
    from db.registry import register_shipped_model
    from ocr.sharing import STARTER

    return register_shipped_model(Settings(data_dir=Path(data_dir), database_url=url), STARTER)


@st.cache_resource(show_spinner=False)
def _queue_default_data(data_dir: str, url: str, n: int, starter: int | None) -> list[int]:
    """The default data and pool; with a starter model just registered, its evaluation on the default validation
    split (Review has mistakes to browse) and its reading of the pool (Label next has an order), read as the card's
    figures are, with the names language model. The worker runs them in this order."""
    from db.catalog import dataset_counts
    from jobs.queue import list_jobs, submit

    s = Settings(data_dir=Path(data_dir), database_url=url)
    if dataset_counts(s) or any(j["kind"] == "synth" for j in list_jobs(s, limit=1000)):
        return []
    ids = [submit(s, "synth", {"n": n, "name": DEFAULT_DATASET, "seed": 0}),
           submit(s, "synth", {"n": max(1, n // 10), "name": DEFAULT_POOL, "seed": 7, "unlabelled": True})]
    if starter is not None:
        ids += [submit(s, "evaluate", {"model": starter, "dataset": DEFAULT_DATASET, "split": "validation", "lm": True}),
                submit(s, "predict", {"model": starter, "dataset": DEFAULT_POOL, "lm": True})]
    return ids
