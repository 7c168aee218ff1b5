"""Train: queue a training job, follow the jobs, watch live curves, compare runs, read the log."""

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard.state import dataset_choices, model_choices, plain, pool_choices, settings, show_error
from db.models import RESUMABLE, WAITING, JobStatus
from jobs import queue
from jobs.kinds.train import MAX_RANKS, TrainParams
from jobs.params import default
from ocr.alphabet import CHARSET_CHOICES, Alphabet
from ocr.model import PRESETS
from ocr.training.config import SCHEDULERS, SELF_TRAIN_SHARE, TrainConfig

s = settings()
st.title("Train")
defaults = TrainConfig()

datasets = dataset_choices(s)
models = model_choices(s)
pools = pool_choices(s)
with st.form("new-train-job"):
    st.subheader("New training job")
    chosen = st.multiselect("Datasets", list(datasets), default=list(datasets)[:1], key="train_datasets")
    c1, c2, c3, c4 = st.columns(4)
    preset = c1.selectbox("Model preset", list(PRESETS), key="train_preset")
    epochs = c2.number_input("Epochs", 1, 1000, defaults.epochs, key="train_epochs")
    minutes = c3.number_input("Time budget (minutes, 0 = none)", 0.0, 10_000.0, 5.0, key="train_minutes",
                              help="plans the epochs and the learning-rate schedule to end within it")
    batch = c4.number_input("Batch size", 1, 4096, defaults.batch_size, key="train_batch")
    c1, c2, c3, c4 = st.columns(4)
    lr = c1.number_input("Learning rate", 1e-6, 1.0, defaults.lr, format="%.4f", key="train_lr")
    scheduler = c2.selectbox("Scheduler", SCHEDULERS, key="train_scheduler")
    devices = {"auto": "auto (the worker's device: a GPU when it has one)", **queue.live_devices(s)}
    device = c3.selectbox("Device", list(devices), key="train_device", format_func=lambda d: devices.get(d, d),
                          help="The devices of the live workers (not of the machine running this page)")
    init = c4.selectbox("Start from", [None, *models], key="train_init",
                        format_func=lambda i: "a new model" if i is None else models.get(i, f"#{i}"))
    c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
    ranks = c1.number_input("GPUs (DDP ranks)", 1, MAX_RANKS, default(TrainParams, "ranks"), key="train_ranks",
                            help="train on this many devices of one worker at once, one torchrun rank each: its free "
                                 "GPUs, or the slots of a CPU worker started with --slots N")
    augment = c2.checkbox("Augmentation", value=True, key="train_augment")
    charset = c3.selectbox("Character set", CHARSET_CHOICES, key="train_charset",
                           help="of a new model: auto takes names, digits or latin, whichever holds the labels; data "
                                "takes exactly the labels' characters. A model it starts from keeps its own set.")
    grow = c4.checkbox("Starting from a model: add the characters it lacks", value=defaults.grow_charset,
                       key="train_grow_charset", help="Off: labels with characters the model cannot write are left "
                                                      "out of the run (the log says how many)")
    st.markdown("**Self-training** on images without labels: a first model reads them, and the last part of the run "
                "fine-tunes on the readings it is confident of (kept as predictions, never as labels)")
    c1, c2, c3, c4 = st.columns(4)
    pool = c1.multiselect("Unlabelled images", list(pools), key="train_pool",
                          format_func=lambda name: f"{name} ({pools[name]:,} without a label)",
                          help="none: no self-training" if pools else "no dataset has images without a label")
    share = c2.slider("Share of the run", 0.1, 0.8, SELF_TRAIN_SHARE, 0.05, key="train_self_share",
                      help="the epochs or the time budget given to fine-tuning on pseudo-labels")
    threshold = c3.number_input("Keep a reading at P >=", 0.01, 1.0, defaults.pseudo_threshold, 0.05,
                                key="train_pseudo_threshold", help="P(text | image) of the reading")
    pseudo_lm = c4.checkbox("Read with the names language model", value=defaults.pseudo_lm == "names",
                            key="train_pseudo_lm")
    start_reads = st.checkbox("The start model reads them (no first model: the whole run trains on labels + its "
                              "readings)", value=False, key="train_teacher_is_init",
                              help="for retraining a model that already reads well, as a labelling loop does; needs "
                                   "a start model")
    if st.form_submit_button("Start training", type="primary"):
        config = {"preset": preset, "epochs": int(epochs), "batch_size": int(batch), "lr": float(lr),
                  "scheduler": scheduler, "augment": augment, "device": device, "charset": charset,
                  "grow_charset": grow}
        if minutes > 0:
            config["max_minutes"] = float(minutes)
        if pool:
            config |= {"self_train": float(share), "pseudo_threshold": float(threshold),
                       "pseudo_lm": "names" if pseudo_lm else None}
        try:
            if start_reads and init is None:
                raise ValueError("the start model reads the unlabelled images: choose a model to start from")
            job_id = queue.submit(s, "train", {"datasets": chosen, "init_model": init, "config": config,
                                               "unlabelled_datasets": pool, "ranks": int(ranks),
                                               "teacher_model": init if start_reads and pool else None})
            st.session_state["train_job"] = job_id  # follow the new job below
            st.success(f"Queued training job {job_id}.")
            if waiting := queue.job_status(s, job_id)["waiting"]:
                st.warning(f"Job {job_id} is {waiting}.")
        except ValueError as exc:
            show_error(exc)

with st.expander("Workers and their free devices"):
    machines = [{"worker": w.id, "host": w.host, "device": w.device, "devices": len(w.devices or []) or 1,
                 "free": len(w.free) if w.free is not None else None, "running job": w.job_id}
                for w in queue.alive_workers(s)]
    if machines:
        st.dataframe(pd.DataFrame(machines), hide_index=True)
    else:
        st.caption("No worker is alive: start one with `python -m jobs.worker` (`--device cuda` serves every GPU)")

jobs = queue.list_jobs(s, limit=200)
train_jobs = [j for j in jobs if j["kind"] == "train"]
if not train_jobs:
    st.info("No training job yet.")
    st.stop()


def epoch_of(job: dict) -> str:
    """'3/10' from the job's progress fields (``TrainProgress``), '' before its first step."""
    data = job.get("progress_data") or {}
    return f"{data['epoch']}/{data['epochs']}" if "epoch" in data else ""


def eta_of(job: dict) -> str:
    eta = (job.get("progress_data") or {}).get("eta_min")
    return f"{eta:.1f} min" if eta is not None and job["status"] == JobStatus.RUNNING else ""


@st.fragment(run_every=2)
def job_table() -> None:
    rows = [{"job": j["id"], "status": j["status"], "progress": j["progress"], "epoch": epoch_of(j),
             "ETA": eta_of(j), "message": j["waiting"] or j["message"] or "",
             "datasets": ", ".join(j["params"].get("datasets", [])), "device": j["device"],
             "error": j["error"] or ""} for j in queue.list_jobs(s, limit=50) if j["kind"] == "train"]
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0)})


st.subheader("Jobs")
job_table()
ids = [j["id"] for j in train_jobs]
picked = st.selectbox("Job", ids, format_func=lambda i: f"job {i}", key="train_job")
job = next(j for j in train_jobs if j["id"] == picked)
c1, c2, _ = st.columns([1, 1, 4])
if c1.button("Cancel", disabled=job["status"] not in WAITING, key="train_cancel"):
    st.toast(f"job {picked}: {queue.request_cancel(s, picked)}")
if c2.button("Resume", disabled=job["status"] not in RESUMABLE, key="train_resume"):
    try:
        queue.resume(s, picked)
        st.toast(f"job {picked} queued again")
    except ValueError as exc:
        show_error(exc)

compare = st.multiselect("Compare with", [i for i in ids if i != picked], key="train_compare")


def curves(job_ids: list[int]) -> None:
    rows = pd.DataFrame(queue.metric_rows(s, job_ids))
    if rows.empty:
        st.caption("No metrics yet: they appear a few seconds after the job starts.")
        return
    rows["job"] = rows["job_id"].map(lambda i: f"job {i}")
    steps, epochs = rows[rows.kind == "step"], rows[rows.kind == "epoch"]
    charts = [("train loss per step", steps, "step", "train_loss"),
              ("validation loss", epochs, "epoch", "val_loss"),
              ("validation exact match", epochs, "epoch", "val_exact_match"),
              ("validation CER", epochs, "epoch", "val_cer"),
              ("learning rate", steps, "step", "lr"),
              ("samples/s", steps, "step", "samples_per_s")]
    cols = st.columns(2)
    for i, (title, frame, x, name) in enumerate(charts):
        data = frame[frame.name == name]
        if data.empty:
            continue
        fig = px.line(data, x=x, y="value", color="job", title=title, markers=x == "epoch")
        fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10), yaxis_title=None)
        cols[i % 2].plotly_chart(fig, key=f"chart-{name}")


@st.fragment(run_every=2)
def live() -> None:
    current = queue.job_status(s, picked)
    st.caption(plain(f"job {picked}: {current['status']}, {current['progress']:.0%}  {current['message'] or ''}"))
    result = current.get("result") or {}
    if result.get("charset"):
        added = result.get("charset_added")
        st.caption(plain(f"character set: {Alphabet(result['charset']).describe()}"
                         + (f"; added to the start model's: {' '.join(added)}" if added else "")))
    self_training = result.get("self_training")
    if self_training:
        st.caption(f"self-training: {self_training['kept']:,} pseudo-labels of {self_training['read']:,} unlabelled "
                   f"images (P >= {self_training['threshold']:g}, {self_training['decoder']}), the teacher's "
                   f"validation CER {self_training['teacher_val_cer']:.3f}; they are the teacher model's "
                   "predictions on Review, not labels")
    curves([picked, *compare])
    with st.expander("Log (tail)", expanded=current["status"] in (JobStatus.FAILED, JobStatus.INTERRUPTED)):
        st.code(queue.log_tail(s, picked, 40) or "(empty)", language=None)


live()
