"""``evaluate``: run a checkpoint over one split and write metrics, predictions, the misclassified
images and a Markdown + PDF report."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

from ocr.alphabet import LabelRules
from ocr.data.datasets import import_kaggle
from ocr.decoding.decoder import DecoderConfig
from ocr.evaluation.metrics import accuracy_by_length, confusions, edit_distance, summarize
from ocr.evaluation.report import write_report
from ocr.recognize import Recognizer


def _safe(text: str) -> str:
    return re.sub(r"[^A-Z0-9-]+", "_", text) or "_"


def read_history(checkpoint: Path, ckpt: dict) -> list[dict]:
    """The run's metrics: ``metrics.jsonl`` beside the checkpoint if present, else the epochs kept inside it."""
    log = checkpoint.parent / "metrics.jsonl"
    if log.exists():
        records = []
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        return records
    return [{"type": "epoch", **h} for h in ckpt.get("run_state", {}).get("history", [])]


def evaluate(checkpoint: str | Path, data: str | Path, split: str, out: str | Path,
             decoder: DecoderConfig = DecoderConfig(), device: str = "cpu", engine: str = "auto") -> dict:
    """Every usable sample of the split read with ``decoder`` (greedy by default; see ``ocr.decoding.decoder``) and
    ``engine`` (``ocr.engines``; the one used is recorded)."""
    checkpoint, out = Path(checkpoint), Path(out)
    rec = Recognizer(checkpoint, device=device, engine=engine)
    result = import_kaggle(data, (split,), alphabet=rec.alphabet, rules=LabelRules.of_model(rec.alphabet))
    if result.errors and not result.samples:
        raise ValueError("; ".join(result.errors))
    samples = result.samples
    if not samples:
        raise ValueError(f"{data}: no usable sample in split {split!r}")
    with rec.decoder(decoder, images=len(samples)) as reader:
        preds = rec.read([s.path for s in samples], reader)
    labels = [s.label for s in samples]
    texts = [p.text for p in preds]

    out.mkdir(parents=True, exist_ok=True)
    metrics = summarize(labels, texts)
    metrics["excluded"] = result.summary()["excluded"]
    metrics.update({"split": split, "data": str(data), "checkpoint": str(checkpoint), "decoder": decoder.describe(),
                    "decoder_config": decoder.to_dict(), "engine": rec.engine.name})
    by_length = accuracy_by_length(labels, texts)
    top_confusions = confusions(labels, texts)
    (out / "metrics.json").write_text(json.dumps({**metrics, "by_length": by_length,
                                                  "confusions": top_confusions}, indent=1))

    wrong_dir = out / "misclassified"
    if wrong_dir.exists():
        shutil.rmtree(wrong_dir)
    wrong_dir.mkdir()
    wrong = []
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "prediction", "confidence", "edit_distance"])
        for s, p in zip(samples, preds):
            d = edit_distance(s.label, p.text)
            w.writerow([s.path.name, s.label, p.text, f"{p.confidence:.4f}", d])
            if d:
                name = f"{s.path.stem}__{_safe(s.label)}__as__{_safe(p.text)}{s.path.suffix}"
                shutil.copyfile(s.path, wrong_dir / name)
                wrong.append((s.path, s.label, p.text, p.confidence))
    write_report(out, metrics, read_history(checkpoint, rec.checkpoint), by_length, top_confusions, wrong,
                 model=rec.model.cfg.describe())
    return metrics
