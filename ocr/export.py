"""Export a checkpoint for use outside this project: the model folder (``model.safetensors`` + ``config.json``, see
``ocr.pretrained``; ``--checkpoint DIR`` reads it back), a slim ``.pt``, TorchScript and ONNX.

All of them take the preprocessed batch (N, 1, H, W) and return logits (T, N, C); the character set, decoding and
preprocessing settings travel in ``config.json`` (and in the ``.pt``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ocr.pretrained import save_pretrained, write_config

FORMATS = ("safetensors", "pt", "torchscript", "onnx")


def export(checkpoint: str | Path, out: str | Path, formats: list[str] | None = None) -> list[Path]:
    import torch

    from ocr.train import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model, alphabet, pre = model_from_checkpoint(ckpt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    formats = formats or list(FORMATS)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    written = save_pretrained(ckpt, out) if "safetensors" in formats else [write_config(ckpt, out)]
    example = torch.zeros(2, 1, pre.height, pre.max_width)
    for fmt in formats:
        if fmt == "safetensors":
            continue
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
        written.append(path)
    return written
