"""Export a checkpoint for use outside this project: the model folder (``model.safetensors`` + ``config.json``, see
``ocr.pretrained``; ``--checkpoint DIR`` reads it back), a slim ``.pt``, a ``torch.export`` program (``model.pt2``)
and ONNX (the dynamo exporter, through ``onnxscript``).

All of them take the preprocessed batch (N, 1, H, W), any N and W, and return logits (T, N, C) (ONNX also the
recurrent features, ``features``: it is the file ``ocr.engines`` reads with on a CPU); the character set, decoding and
preprocessing settings travel in ``config.json`` (and in the ``.pt``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ocr.pretrained import save_pretrained, write_config

DIGEST_KEY = "hwr.weights_sha256"  # ONNX metadata: the weights an export was made from

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
            for message in (r"_check_is_size will be removed", r"The tensor attributes self\.(model\.)?rnn\._flat_weights",
                            r"`isinstance\(treespec, LeafSpec\)` is deprecated"):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        registry_log.setLevel(level)


def export_program(model, example):
    """``torch.export`` of the model with the batch size and the image width left free. The program reads lines of
    at least two time steps (``2 * width_stride`` columns; a narrower one is refused with its width): the tracer
    specialises a length of one (a stride-6 model's batch padded to 8 columns would be one step)."""
    import torch
    from torch.export import Dim

    width = Dim("width", min=2 * model.cfg.width_stride)
    with _shapes_kept_free(), _known_torch_notices():
        program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: Dim.DYNAMIC, 3: width}},
                                      strict=False)
    one_narrower = example[:1, :, :, : example.shape[3] // 2 + 3]
    try:
        with _known_torch_notices():
            program.module()(one_narrower)
    except Exception as exc:  # noqa: BLE001 - a guard that fails here is a pinned dimension
        raise ExportError(f"torch {torch.__version__} pinned the exported model to the example's batch size or width "
                          f"({example.shape[0]} x {example.shape[3]} px): {exc}") from exc
    return program


def weights_digest(ckpt: dict) -> str:
    """sha256 of the architecture and the weights (the same for a checkpoint file and its model folder)."""
    h = hashlib.sha256(json.dumps(ckpt["model_config"], sort_keys=True).encode())
    for key in sorted(ckpt["model"]):
        h.update(key.encode())
        h.update(ckpt["model"][key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def plain_copy(model):
    """A copy to trace: eval mode, no gradients, plain layouts (``torch.export.save`` stores a channels_last weight as
    a view it cannot place); the model being read stays as it is."""
    import copy

    import torch

    return copy.deepcopy(model).eval().requires_grad_(False).to(memory_format=torch.contiguous_format)


def reading_module(model):
    """The model as ONNX runs it: logits and the recurrent features they come from (what ``ocr.recognize`` pools into
    an image's embedding), so the one file serves reading and the label queue alike."""
    import torch

    class Reading(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.cfg = model, model.cfg  # the CRNN's config: what export_program reads the stride from

        def forward(self, images):
            return self.model.logits_and_features(images)

    return Reading().eval()


def export_onnx(model, example, path: Path, digest: str | None = None) -> Path:
    """ONNX through the dynamo exporter: input ``images`` (batch, 1, H, width), outputs ``logits`` (time, batch, C)
    and ``features`` (time, batch, 2*hidden). ``digest`` (``weights_digest``) is kept in its metadata."""
    import onnx_ir as ir
    import onnxscript.optimizer
    import torch

    program = export_program(reading_module(model), example)
    with _shapes_kept_free(), _known_torch_notices():
        onnx_program = torch.onnx.export(program, (example,), dynamo=True, verbose=False, input_names=["images"],
                                         output_names=["logits", "features"])
    graph = onnx_program.model.graph
    images, outputs = graph.inputs[0], graph.outputs
    for out in outputs:
        if isinstance(out.shape[0], int) or isinstance(out.shape[0].value, int):
            raise ExportError(f"torch {torch.__version__} pinned the ONNX model's time steps to {out.shape[0]}")
    images.shape = ir.Shape(["batch", *images.shape[1:3], "width"])
    for out in outputs:
        out.shape = ir.Shape(["time", "batch", out.shape[2]])
    # fold the LSTM's weights (sliced into ONNX's gate order) into constants: onnxruntime packs constant weights once
    # (the default limit of 8,192 elements leaves them to every run, 1.7x slower for one image)
    onnxscript.optimizer.optimize(onnx_program.model, input_size_limit=1 << 24, output_size_limit=1 << 24)
    if digest:
        onnx_program.model.metadata_props[DIGEST_KEY] = digest
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
    model = plain_copy(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = save_pretrained(ckpt, out) if "safetensors" in formats else [write_config(ckpt, out)]
    example = torch.zeros(2, 1, pre.height, pre.max_width)
    for fmt in formats:
        if fmt == "pt":
            path = out / "model.pt"
            torch.save({"model": model.state_dict(), "model_config": ckpt["model_config"], "alphabet": alphabet.chars,
                        "preprocess": ckpt["preprocess"], "metrics": ckpt.get("metrics", {})}, path)
        elif fmt == "pt2":
            path = out / "model.pt2"
            torch.export.save(export_program(model, example), path)
        elif fmt == "onnx":
            path = export_onnx(model, example, out / "model.onnx", weights_digest(ckpt))
        else:
            continue
        written.append(path)
    return written
