"""Publishing a model to the Hugging Face Hub: the whole folder is written first, then uploaded in one commit, so a
failed upload leaves nothing half there.

The folder: ``model.safetensors`` + ``config.json`` (``ocr.pretrained``), ``model.onnx``, a model card (``README.md``
with the Hub's YAML metadata and a ``model-index`` of the evaluation's exact match and CER, written with
``huggingface_hub.ModelCard``) and ``samples.json`` (predictions on a few evaluation images: file names and texts, no
image). The token is ``huggingface_hub``'s (``HF_TOKEN`` or ``hf auth login``): it is passed to the client and never
written, printed or kept.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ocr.pretrained import CONFIG, PretrainedError, check_repo_id

LIBRARY_NAME = "hwr-ocr"
SAMPLES = "samples.json"
N_SAMPLES = 12


class PublishError(RuntimeError):
    """Publishing could not happen; one line, and nothing was uploaded."""


@dataclass(frozen=True)
class Evaluation:
    """Figures of the model on data it did not train on (``ocr.evaluation.evaluate``'s metrics and predictions)."""
    exact_match: float
    cer: float
    n: int
    dataset: str  # what the data is, in words, e.g. "real Kaggle validation rows 801-1000"
    split: str = "validation"
    decoder: str = "greedy"
    dataset_id: str | None = None  # a Hub dataset id when the data is one, e.g. landlord/handwriting-recognition
    samples: list[dict] = field(default_factory=list)  # file, label, prediction, confidence

    @classmethod
    def from_run(cls, folder: str | Path, dataset: str, dataset_id: str | None = None) -> Evaluation:
        """An ``ocr evaluate`` output folder (metrics.json + predictions.csv)."""
        import csv

        folder = Path(folder)
        m = json.loads((folder / "metrics.json").read_text())
        with (folder / "predictions.csv").open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[:N_SAMPLES]
        samples = [{"file": r["file"], "label": r["label"], "prediction": r["prediction"],
                    "confidence": float(r["confidence"])} for r in rows]
        return cls(exact_match=m["exact_match"], cer=m["cer"], n=m["n"], dataset=dataset, split=m.get("split", ""),
                   decoder=m.get("decoder", "greedy"), dataset_id=dataset_id, samples=samples)


def model_card(config: dict, repo_id: str, evaluation: Evaluation | None, license: str = "mit",
               datasets: list[str] | None = None, about: str | None = None, onnx: bool = True) -> str:
    """The README of the Hub repo: YAML metadata the Hub indexes, then what the model is, how it was made, its
    figures and how to run it."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = []
    if evaluation:
        where = {"dataset_type": evaluation.dataset_id or "custom", "dataset_name": evaluation.dataset,
                 "dataset_split": evaluation.split, "task_name": "Handwritten field recognition"}
        results = [EvalResult(task_type="image-to-text", metric_type="exact_match", metric_value=evaluation.exact_match,
                              metric_name="Exact match", **where),
                   EvalResult(task_type="image-to-text", metric_type="cer", metric_value=evaluation.cer,
                              metric_name="CER", **where)]
    data = ModelCardData(license=license, library_name=LIBRARY_NAME, pipeline_tag="image-to-text",
                         tags=["ocr", "handwriting-recognition", "crnn", "ctc", "onnx"], datasets=datasets or None,
                         metrics=["exact_match", "cer"], model_name=repo_id, eval_results=results or None)
    mc, pre = config["model_config"], config["preprocess"]
    charset = config["alphabet"]
    train = config.get("train_config") or {}
    prov = (config.get("provenance") or {}).get("self_training")
    lines = [
        f"# {repo_id.split('/')[-1]}",
        "",
        "A CRNN (CNN + BiLSTM + linear, CTC) that reads one handwritten field (a name, a date, a number) from a "
        f"scanned form crop, trained with `{LIBRARY_NAME}` (handwriting OCR you can watch, correct and retrain).",
        "",
        *([about, ""] if about else []),
        "| | |",
        "|---|---|",
        f"| architecture | `{_describe(mc)}`, {mc['num_classes']} classes (the CTC blank + {len(charset)} characters) |",
        f"| character set | `{charset}` |",
        f"| input | gray crop, ink = 1 on 0, height {pre.get('height')} px, width scaled with it (at most "
        f"{pre.get('max_width')} px); see `config.json` `preprocess` |",
        f"| output | logits (T, N, C), one time step per {_stride(mc)} input columns, class 0 the blank |",
    ]
    if train:
        lines.append(f"| training | preset `{train.get('preset', '?')}`, seed {train.get('seed', '?')}, the full "
                     "configuration under `train_config` in `config.json` |")
    if prov:
        lines.append(f"| self-training | {prov.get('kept', '?')} pseudo-labels of {prov.get('read', '?')} unlabelled "
                     f"images read at P >= {prov.get('threshold', '?')} |")
    metrics = config.get("metrics") or {}
    if metrics.get("val_cer") is not None:
        lines.append(f"| its own validation split | exact match {metrics.get('val_exact_match', float('nan')):.3f}, "
                     f"CER {metrics['val_cer']:.3f} ({metrics.get('n_val', '?')} images) |")
    lines.append("")
    if evaluation:
        lines += ["## Evaluation", "",
                  f"On {evaluation.n} images of {evaluation.dataset} ({evaluation.split}), which it did not train on, "
                  f"read with {evaluation.decoder}: **exact match {evaluation.exact_match:.3f}, CER {evaluation.cer:.3f}**.",
                  ""]
        if evaluation.samples:
            lines += ["| image | label | prediction | confidence |", "|---|---|---|---|"]
            lines += [f"| `{s['file']}` | {_cell(s['label'])} | {_cell(s['prediction'])} | {s['confidence']:.2f} |"
                      for s in evaluation.samples]
            lines += ["", f"(`{SAMPLES}` holds them too.)", ""]
    lines += [
        "## Use", "",
        "```python",
        "from huggingface_hub import snapshot_download",
        "from ocr.recognize import Recognizer  # pip install the project"
        + ("; or run model.onnx with onnxruntime" if onnx else ""),
        f"print(Recognizer(snapshot_download(\"{repo_id}\")).read([\"crop.jpg\"])[0].text)",
        "```", "",
        f"or `python -m ocr predict --checkpoint hf://{repo_id} crop.jpg`. "
        + ("`model.onnx` takes the preprocessed batch (N, 1, H, W) and returns the logits (and the recurrent "
           "features, `features`); decode the logits greedily (best "
           "class per step, merge repeats, drop the blank) with the character set above." if onnx else
           "`python -m ocr export --checkpoint DIR --out OUT --format onnx` writes its ONNX model; "
           "`python -m ocr export-web` a web page that runs it in the browser."),
        "",
        "## Limits", "",
        "It reads one field per image, in the character set above; handwriting unlike its training data (other "
        "scripts, other pens and forms) reads worse. Check its mistakes on your own images before trusting it.",
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"))


def build_folder(checkpoint: str | Path, out: str | Path, repo_id: str, evaluation: Evaluation | None = None,
                 license: str = "mit", datasets: list[str] | None = None) -> list[Path]:
    """Everything the Hub repo holds, written to ``out`` (the dry run stops here)."""
    from ocr.sharing.export import export

    repo_id = check_repo_id(repo_id)
    out = Path(out)
    written = export(checkpoint, out, formats=["safetensors", "onnx"])
    config = json.loads((out / CONFIG).read_text(encoding="utf-8"))
    (out / "README.md").write_text(model_card(config, repo_id, evaluation, license, datasets), encoding="utf-8")
    written.append(out / "README.md")
    if evaluation and evaluation.samples:
        (out / SAMPLES).write_text(json.dumps(evaluation.samples, indent=1, ensure_ascii=False), encoding="utf-8")
        written.append(out / SAMPLES)
    return written


def publish(checkpoint: str | Path, repo_id: str, evaluation: Evaluation | None = None, private: bool = False,
            license: str = "mit", datasets: list[str] | None = None, dry_run: bool = False,
            out: str | Path | None = None, token: str | None = None) -> dict:
    """Build the folder and, unless ``dry_run``, upload it as one commit. Returns where it went."""
    try:
        repo_id = check_repo_id(repo_id)
    except PretrainedError as exc:
        raise PublishError(str(exc)) from None
    if dry_run and out is None:
        raise PublishError("a dry run writes the folder only: give it --out DIR")
    token = None if dry_run else _token(token)  # said before the model is exported, not after
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="hwr-publish-"))
    try:
        files = build_folder(checkpoint, folder, repo_id, evaluation, license, datasets)
        if dry_run:
            return {"repo_id": repo_id, "folder": str(folder), "files": sorted(p.name for p in files), "uploaded": False}
        return {"repo_id": repo_id, "files": sorted(p.name for p in files), "uploaded": True,
                "url": _upload(folder, repo_id, private, token)}
    finally:
        if out is None:
            shutil.rmtree(folder, ignore_errors=True)


def _token(token: str | None) -> str:
    """The given token, else the one ``hf auth login`` or ``HF_TOKEN`` left."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access); "
                           "nothing was uploaded")
    return token


def _upload(folder: Path, repo_id: str, private: bool, token: str) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model",
                                 commit_message=f"Upload {LIBRARY_NAME} model")
    except Exception as exc:  # noqa: BLE001 - offline, no rights, bad token: one line, the token never in it
        text = str(exc).replace(token, "***").strip().splitlines()
        raise PublishError(f"upload to {repo_id} failed ({exc.__class__.__name__}"
                           f"{': ' + text[0][:200] if text else ''}); nothing was uploaded") from None
    return str(getattr(info, "repo_url", None) or f"https://huggingface.co/{repo_id}")


def _describe(mc: dict) -> str:
    from ocr.model import CRNNConfig

    return CRNNConfig.from_dict(mc).describe()


def _stride(mc: dict) -> int:
    from ocr.model import CRNNConfig

    return CRNNConfig.from_dict(mc).width_stride


def _cell(text: str) -> str:
    return re.sub(r"([|\\`*_])", r"\\\1", text) or "(empty)"


__all__ = ["Evaluation", "PublishError", "build_folder", "model_card", "publish"]
