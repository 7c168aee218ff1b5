"""Models: checkpoints and their metrics, evaluation jobs, reports, export, the default model, comparing two models."""

import io
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.state import dataset_choices, model_choices, select_model, settings, show_error
from db.catalog import splits_of
from db.models import JobStatus
from db.registry import list_models, model_file, set_default
from db.review import compare_models
from jobs import queue
from ocr.decoding.types import VIEW_OFFSETS

s = settings()
st.title("Models")
models = list_models(s)
if not models:
    st.info("No model yet: train one on the Train page.")
    st.stop()
st.dataframe(pd.DataFrame([{"model": m.id, "name": m.name, "kind": m.kind, "default": m.is_default, "epoch": m.epoch,
                            "val exact match": (m.metrics or {}).get("val_exact_match"),
                            "val CER": (m.metrics or {}).get("val_cer"), "path": m.path} for m in models]),
             hide_index=True)

model_id = select_model(s, "models_model", "")
c1, c2 = st.columns(2)
if c1.button("Set as default model", key="models_default"):
    set_default(s, model_id)
    st.toast(f"model {model_id} is the default")

LM_HELP = ("Beam search with a character language model of first names and surnames: it prefers likely "
           "spellings (GUILLAUME over GUILLAURE) but can still read any name. +10 to +15 points of exact "
           "match on real Kaggle names; 3-5 ms more per image.")
VIEWS_HELP = ("Test-time augmentation: each image is read this many times, moved a row or two up and down, and the "
              "model's outputs averaged. Reads more names right on real handwriting (see the benchmarks) for one more "
              "run of the model per view.")
datasets = dataset_choices(s)
st.subheader("Evaluate")
if datasets:
    with st.form("evaluate"):
        e1, e2 = st.columns(2)
        ds = e1.selectbox("Dataset", list(datasets), key="eval_dataset")
        split = e2.selectbox("Split", ["validation", "train", "test"], key="eval_split")
        l1, l2 = st.columns(2)
        lm = l1.checkbox("Names language model", value=True, key="eval_lm", help=LM_HELP)
        views = l2.number_input("Views", 1, len(VIEW_OFFSETS), 1, key="eval_views", help=VIEWS_HELP)
        if st.form_submit_button("Run evaluation job"):
            try:
                job_id = queue.submit(s, "evaluate", {"model": model_id, "dataset": ds, "split": split, "lm": lm,
                                                      "views": int(views)})
                st.success(f"Queued evaluation job {job_id}.")
            except ValueError as exc:
                show_error(exc)
    with st.form("predict-pool"):
        st.caption("Model-assisted labelling: read the samples without a label (e.g. an imported folder of images); "
                   "then label them on Review > unlabelled pool, lowest confidence first.")
        pool = st.selectbox("Dataset", list(datasets), key="pool_dataset")
        p1, p2 = st.columns(2)
        pool_lm = p1.checkbox("Names language model", value=True, key="pool_lm", help=LM_HELP)
        pool_views = p2.number_input("Views", 1, len(VIEW_OFFSETS), 1, key="pool_views", help=VIEWS_HELP)
        if st.form_submit_button("Read the unlabelled samples"):
            try:
                job_id = queue.submit(s, "predict", {"model": model_id, "dataset": pool, "lm": pool_lm,
                                                     "views": int(pool_views)})
                st.success(f"Queued job {job_id}.")
            except ValueError as exc:
                show_error(exc)


@st.fragment(run_every=3)
def evaluations() -> None:
    jobs = queue.jobs_of_model(s, model_id)
    if not jobs:
        st.caption("No evaluation of this model yet.")
        return
    st.dataframe(pd.DataFrame([{"job": j["id"], "kind": j["kind"], "status": j["status"], "progress": j["progress"],
                                "dataset": j["params"]["dataset"], "split": j["params"].get("split") or "unlabelled",
                                "decoder": (j["result"] or {}).get("decoder"),
                                "exact match": (j["result"] or {}).get("exact_match"),
                                "CER": (j["result"] or {}).get("cer"), "error": j["error"] or ""} for j in jobs]),
                 hide_index=True, column_config={"progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0)})
    done = next((j for j in jobs if j["status"] == JobStatus.SUCCEEDED and (j["result"] or {}).get("report")), None)
    if done is not None:
        folder = s.resolve(done["result"]["report"])
        r1, r2 = st.columns(2)
        for col, name, mime in ((r1, "report.md", "text/markdown"), (r2, "report.pdf", "application/pdf")):
            if (folder / name).exists():
                col.download_button(f"Download {name} (job {done['id']})", (folder / name).read_bytes(),
                                     file_name=f"model{model_id}-{name}", mime=mime, key=f"dl-{name}-{done['id']}")


evaluations()

st.subheader("Export")
fmt = st.selectbox("Format", ["safetensors", "onnx", "pt2", "pt"], key="export_format",
                   format_func={"safetensors": "model folder (model.safetensors + config.json; loads anywhere a "
                                               "checkpoint does)", "pt": ".pt (state dict + config + alphabet)",
                                "pt2": "torch.export program (model.pt2; torch.export.load, any batch and width)",
                                "onnx": "ONNX (any batch and width)"}.get)
if st.button("Prepare the export", key="export_go"):
    from ocr.sharing.export import export

    try:
        with tempfile.TemporaryDirectory() as tmp, st.spinner("exporting"):
            written = export(model_file(s, model_id), tmp, formats=[fmt])
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                for path in written:
                    zf.write(path, Path(path).name)
            st.session_state["export_zip"] = (f"model{model_id}-{fmt}.zip", buf.getvalue())
    except (ValueError, RuntimeError, OSError) as exc:
        show_error(exc)
if "export_zip" in st.session_state:
    name, payload = st.session_state["export_zip"]
    st.download_button(f"Download {name}", payload, file_name=name, mime="application/zip", key="export_dl")

st.subheader("Share on the Hugging Face Hub")
st.caption("A job writes the model's folder (model.safetensors, config.json, model.onnx, a model card with the chosen "
           "evaluation's exact match and CER) and uploads it in one commit with the worker's token (HF_TOKEN or `hf "
           "auth login` on the worker's machine; never typed here, stored or logged). A dry run only writes the "
           "folder, to check it or upload it yourself.")
evals = [j for j in queue.jobs_of_model(s, model_id, kinds=("evaluate",)) if j["status"] == JobStatus.SUCCEEDED]
with st.form("publish"):
    p1, p2 = st.columns(2)
    repo_id = p1.text_input("Repo (USER/NAME)", key="publish_repo", placeholder="your-name/handwriting-names")
    evaluation = p2.selectbox("Figures on the card", [None, *[j["id"] for j in evals]], key="publish_eval",
                              format_func=lambda i: "none" if i is None else next(
                                  f"evaluation job {j['id']}: {j['params']['dataset']}:{j['params']['split']}, exact "
                                  f"{(j['result'] or {}).get('exact_match', float('nan')):.3f}" for j in evals
                                  if j["id"] == i))
    private = st.checkbox("Private repo", key="publish_private")
    b1, b2 = st.columns(2)
    dry = b1.form_submit_button("Write the folder only (dry run)")
    go = b2.form_submit_button("Publish", type="primary")
    if dry or go:
        try:
            job_id = queue.submit(s, "publish", {"model": model_id, "repo_id": repo_id.strip(), "private": private,
                                                 "evaluation_job": evaluation, "dry_run": bool(dry)})
            st.success(f"Queued publish job {job_id}.")
        except ValueError as exc:
            show_error(exc)


@st.fragment(run_every=3)
def publish_jobs() -> None:
    for j in queue.jobs_of_model(s, model_id, kinds=("publish",), limit=50)[:5]:
        r = j["result"] or {}
        if j["status"] == JobStatus.SUCCEEDED and r.get("uploaded"):
            st.success(f"Job {j['id']}: published to {r['url']}")
        elif j["status"] == JobStatus.SUCCEEDED:
            st.info(f"Job {j['id']}: folder written to {r.get('folder')} ({', '.join(r.get('files', []))})")
        elif j["status"] == JobStatus.FAILED:
            st.error(f"Job {j['id']}: {j['error']}")
        else:
            st.caption(f"Job {j['id']}: {j['status']}")


publish_jobs()

st.subheader("Compare two models on the same samples")
choices = model_choices(s)
if len(choices) >= 2:
    c1, c2, c3 = st.columns(3)
    a = c1.selectbox("Before", list(choices), index=1, key="cmp_a", format_func=choices.get)
    b = c2.selectbox("After", list(choices), index=0, key="cmp_b", format_func=choices.get)
    split = c3.selectbox("Split", sorted({sp for d in datasets.values() for sp in splits_of(s, d)}), key="cmp_split")
    result = compare_models(s, a, b, split)
    if not result["n"]:
        st.info("These models have no predictions on common samples of this split: evaluate both on it first.")
    else:
        m1, m2, m3 = st.columns(3)
        m1.metric("samples", result["n"])
        before, after = result["a"], result["b"]
        m2.metric("exact match", f"{after['exact_match']:.3f}", f"{after['exact_match'] - before['exact_match']:+.3f}")
        m3.metric("CER", f"{after['cer']:.3f}", f"{after['cer'] - before['cer']:+.3f}", delta_color="inverse")
        f1, f2 = st.columns(2)
        f1.markdown(f"**Wrong -> right** ({len(result['fixed'])})")
        f1.dataframe(pd.DataFrame(result["fixed"])[["label", "a", "b"]] if result["fixed"] else None, hide_index=True)
        f2.markdown(f"**Right -> wrong** ({len(result['broken'])})")
        f2.dataframe(pd.DataFrame(result["broken"])[["label", "a", "b"]] if result["broken"] else None, hide_index=True)
else:
    st.caption("Train a second model (e.g. Review > Retrain with corrections) to compare.")
