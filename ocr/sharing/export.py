"""Export a checkpoint for use outside this project: the model folder (``model.safetensors`` + ``config.json``, see
``ocr.pretrained``; ``--checkpoint DIR`` reads it back), a slim ``.pt``, a ``torch.export`` program (``model.pt2``)
and ONNX (the dynamo exporter, through ``onnxscript``).

All of them take the preprocessed batch (N, 1, H, W), any N and W, and return logits (T, N, C); the character set,
decoding and preprocessing settings travel in ``config.json`` (and in the ``.pt``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ocr.pretrained import save_pretrained, write_config

FORMATS = ("safetensors", "pt", "pt2", "onnx")


class ExportError(RuntimeError):
    """The exporter could not keep the model's batch size and width free."""


@contextmanager
def _shapes_kept_free() -> Iterator[None]:
    """Two things pin a dimension of this model when it is exported, and both are undone here, for tracing only:

    - torch.export works out nn.LSTM's output shape by running its decomposition, a Python loop over the time steps,
      which pins the sequence length to the example's (pytorch/pytorch#115092). mkldnn's one-layer kernel has a
      shape-only fake implementation: the shapes are traced through it. The graph keeps the whole ``aten.lstm``
      (one ONNX LSTM node) and runs PyTorch's own kernel.
    - An example batch of 2 makes the tracer assume the batch is never 1; size-oblivious reasoning keeps 1 allowed.
    """
    import torch._decomp.decompositions as decompositions
    import torch.fx.experimental._config as shape_config
    from torch._subclasses.fake_tensor import FakeTensor

    select = getattr(decompositions, "select_one_layer_lstm_function", None)
    one_layer = getattr(decompositions, "mkldnn_one_layer_lstm", None)
    if select is None or one_layer is None:  # another torch: the checks after export say if it matters
        with shape_config.patch(backed_size_oblivious=True):
            yield
        return

    def traced_select(input, hx, params):
        if isinstance(input, FakeTensor) and input.device.type == "cpu" and hx[0].size(2) == hx[1].size(2):
            return one_layer
        return select(input, hx, params)

    decompositions.select_one_layer_lstm_function = traced_select
    try:
        with shape_config.patch(backed_size_oblivious=True):
            yield
    finally:
        decompositions.select_one_layer_lstm_function = select


@contextmanager
def _known_torch_notices() -> Iterator[None]:
    """Hide what torch 2.13 says to itself while exporting this model (its own deprecations, LSTM's flat weights, the
    ONNX registry missing torchvision); any other warning still shows."""
    import logging
    import warnings

    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for message in (r"_check_is_size will be removed", r"The tensor attributes self\.rnn\._flat_weights",
                            r"`isinstance\(treespec, LeafSpec\)` is deprecated"):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        registry_log.setLevel(level)


def export_program(model, example):
    """``torch.export`` of the model with the batch size and the image width left free."""
    import torch
    from torch.export import Dim

    with _shapes_kept_free(), _known_torch_notices():
        program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: Dim.DYNAMIC, 3: Dim.DYNAMIC}},
                                      strict=False)
    one_narrower = example[:1, :, :, : example.shape[3] // 2 + 3]
    try:
        with _known_torch_notices():
            program.module()(one_narrower)
    except Exception as exc:  # noqa: BLE001 - a guard that fails here is a pinned dimension
        raise ExportError(f"torch {torch.__version__} pinned the exported model to the example's batch size or width "
                          f"({example.shape[0]} x {example.shape[3]} px): {exc}") from exc
    return program


def export_onnx(model, example, path: Path, program=None) -> Path:
    """ONNX through the dynamo exporter: inputs ``images`` (batch, 1, H, width), output ``logits`` (time, batch, C).
    Given the model's ``torch.export`` program (``export_program``), it converts that one instead of tracing again."""
    import onnx_ir as ir
    import torch

    program = program if program is not None else export_program(model, example)
    with _shapes_kept_free(), _known_torch_notices():
        onnx_program = torch.onnx.export(program, (example,), dynamo=True, verbose=False, input_names=["images"],
                                         output_names=["logits"])
    images, logits = onnx_program.model.graph.inputs[0], onnx_program.model.graph.outputs[0]
    if isinstance(logits.shape[0], int) or isinstance(logits.shape[0].value, int):
        raise ExportError(f"torch {torch.__version__} pinned the ONNX model's time steps to {logits.shape[0]}")
    images.shape = ir.Shape(["batch", *images.shape[1:3], "width"])
    logits.shape = ir.Shape(["time", "batch", logits.shape[2]])
    onnx_program.save(str(path))
    return path


def export(checkpoint: str | Path, out: str | Path, formats: list[str] | None = None) -> list[Path]:
    import torch

    from ocr.checkpoint import load_checkpoint, model_from_checkpoint

    formats = formats or list(FORMATS)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    ckpt = load_checkpoint(checkpoint)
    model, alphabet, pre = model_from_checkpoint(ckpt)
    # plain layouts: torch.export.save stores a channels_last weight as a view it cannot place
    model.eval().requires_grad_(False).to(memory_format=torch.contiguous_format)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = save_pretrained(ckpt, out) if "safetensors" in formats else [write_config(ckpt, out)]
    example = torch.zeros(2, 1, pre.height, pre.max_width)
    program = export_program(model, example) if {"pt2", "onnx"} & set(formats) else None  # traced once for both
    for fmt in formats:
        if fmt == "pt":
            path = out / "model.pt"
            torch.save({"model": model.state_dict(), "model_config": ckpt["model_config"], "alphabet": alphabet.chars,
                        "preprocess": ckpt["preprocess"], "metrics": ckpt.get("metrics", {})}, path)
        elif fmt == "pt2":
            path = out / "model.pt2"
            torch.export.save(program, path)
        elif fmt == "onnx":
            path = export_onnx(model, example, out / "model.onnx", program)
        else:
            continue
        written.append(path)
    return written
