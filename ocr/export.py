"""Export a checkpoint for use outside this project: a slim ``.pt``, TorchScript and ONNX.

All three take the preprocessed batch (N, 1, H, W) and return logits (T, N, C); decoding and
preprocessing settings travel in the ``.pt`` and in ``model.json``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ocr.train import load_checkpoint, model_from_checkpoint

FORMATS = ("pt", "torchscript", "onnx")


def export(checkpoint: str | Path, out: str | Path, formats: list[str] | None = None) -> list[Path]:
    ckpt = load_checkpoint(checkpoint)
    model, alphabet, pre = model_from_checkpoint(ckpt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model_config": ckpt["model_config"], "alphabet": alphabet.chars, "blank": 0,
            "preprocess": ckpt["preprocess"], "input": "float32 (N, 1, H, W), ink=1 on 0, see ocr.preprocess",
            "output": "logits (T, N, C), T = W // width_stride", "metrics": ckpt.get("metrics", {})}
    written = [out / "model.json"]
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    example = torch.zeros(2, 1, pre.height, pre.max_width)
    for fmt in formats or FORMATS:
        if fmt == "pt":
            path = out / "model.pt"
            torch.save({"model": model.state_dict(), "model_config": ckpt["model_config"], "alphabet": alphabet.chars,
                        "preprocess": ckpt["preprocess"], "metrics": ckpt.get("metrics", {})}, path)
        elif fmt == "torchscript":
            path = out / "model.torchscript.pt"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(model, example, check_trace=False)
            traced.save(str(path))
        elif fmt == "onnx":
            path = out / "model.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=["logits"],
                                  dynamic_axes={"images": {0: "batch", 3: "width"}, "logits": {0: "time", 1: "batch"}},
                                  opset_version=17, dynamo=False)
        else:
            raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
        written.append(path)
    return written
