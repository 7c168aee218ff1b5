"""What runs a batch of images of one padded width through a model: PyTorch (the model training made; a GPU) or
onnxruntime (the model's own ONNX export, ``ocr.sharing.export``: on a 2-core CPU it reads 1.4-1.5x faster than
torch end to end, see docs/benchmarks.md). Both return the same two arrays, so ``ocr.recognize.read_arrays`` reads
an image one way whichever runs it.

The ONNX file is made once per weights (by a training job for the model it registers, or on the first read with
``onnx``) and kept beside the checkpoint (``best.pt`` -> ``best.pt.onnx``, a model folder's ``model.onnx``), else in
the user's cache (``HWR_CACHE_DIR``); it records the digest of the weights it was made from, and a file made from
other weights is not used."""

from __future__ import annotations

import logging
import os
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ocr.data.names import cache_dir
from ocr.sharing.export import DIGEST_KEY, export_onnx, plain_copy, weights_digest

ENGINES = ("auto", "torch", "onnx")
ENGINE_HELP = ("what runs the model: auto (onnxruntime on a CPU where the model's ONNX file is there, torch otherwise), "
               "torch, or onnx (made if missing)")
log = logging.getLogger(__name__)

if TYPE_CHECKING:  # torch is imported where a model is run: the command lines list ENGINES without it
    import torch

    from ocr.model import CRNN


class Engine(Protocol):
    name: str
    lock: threading.Lock | nullcontext  # held around a call where the engine cannot run two at once

    def __call__(self, images: np.ndarray, alone: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(n, 1, H, W) float32 -> logits (T, n, C) and the recurrent features (T, n, 2*hidden), float32 arrays.
        ``alone``: no other batch runs beside this one, every core may serve it."""


class TorchEngine:
    name = "torch"

    def __init__(self, model: CRNN, device: torch.device):
        self.model, self.device = model, device
        self.lock = threading.Lock()  # one forward at a time: torch already spreads one over the cores

    def __call__(self, images: np.ndarray, alone: bool = True) -> tuple[np.ndarray, np.ndarray]:
        import torch

        self.model.eval()
        with torch.inference_mode():
            logits, features = self.model.logits_and_features(torch.from_numpy(images).to(self.device))
        return logits.float().cpu().numpy(), features.float().cpu().numpy()


class OnnxEngine:
    """Two onnxruntime sessions of the file: one of a single thread for the batches ``Recognizer`` runs side by side
    (as many as there are cores, called from several threads: that keeps every core busy through preprocessing and
    decoding too), and one of ``threads`` threads for a batch read alone (a drawing, one file)."""

    name = "onnx"

    def __init__(self, path: Path, threads: int = 1):
        self.narrow = _session(path, 1)
        self.wide = _session(path, threads) if threads > 1 else self.narrow
        self.digest = self.narrow.get_modelmeta().custom_metadata_map.get(DIGEST_KEY)
        self.path = path
        self.lock = nullcontext()  # InferenceSession.run is thread-safe

    def __call__(self, images: np.ndarray, alone: bool = True) -> tuple[np.ndarray, np.ndarray]:
        session = self.wide if alone else self.narrow
        logits, features = session.run(["logits", "features"], {"images": images})
        return logits, features


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_places(checkpoint: str | Path, digest: str) -> list[Path]:
    """Where the ONNX file of a checkpoint is looked for and written, in order: beside it, then the user's cache."""
    path = Path(checkpoint)
    beside = [path / "model.onnx"] if path.is_dir() else [path.with_name(path.name + ".onnx")] if path.is_file() else []
    return [*beside, cache_dir() / "onnx" / f"{digest[:32]}.onnx"]


def find_onnx(checkpoint: str | Path, ckpt: dict, threads: int = 1) -> OnnxEngine | None:
    """The sessions of the checkpoint's ONNX file if one made from these very weights is in its places."""
    digest = weights_digest(ckpt)
    for place in onnx_places(checkpoint, digest):
        if place.is_file():
            try:
                engine = OnnxEngine(place, threads)
            except Exception:  # noqa: BLE001 - a damaged or foreign file counts as none
                continue
            if engine.digest == digest:
                return engine
    return None


def make_onnx(checkpoint: str | Path, ckpt: dict | None = None, model: CRNN | None = None) -> Path:
    """Export the checkpoint to ONNX in the first of its places that can be written (``ModelError`` if none can);
    a training job does it for the model it registers, so every reader finds it made."""
    from ocr.checkpoint import ModelError, load_checkpoint, model_from_checkpoint

    ckpt = ckpt if ckpt is not None else load_checkpoint(checkpoint)
    model = model if model is not None else model_from_checkpoint(ckpt)[0]
    digest = weights_digest(ckpt)
    problems = []
    for place in onnx_places(checkpoint, digest):
        try:
            return _export_to(place, model, ckpt, digest)
        except OSError as exc:  # a read-only folder: the next place
            problems.append(f"{place.parent}: {exc.strerror or exc}")
    raise ModelError("could not write the model's ONNX file (" + "; ".join(problems) + ")")


def _export_to(place: Path, model: CRNN, ckpt: dict, digest: str) -> Path:
    import torch

    place.parent.mkdir(parents=True, exist_ok=True)
    tmp = place.with_name(f".{place.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    height, width = ckpt["preprocess"]["height"], ckpt["preprocess"]["max_width"]
    try:
        export_onnx(plain_copy(model), torch.zeros(2, 1, height, width), tmp, digest)
        os.replace(tmp, place)  # a reader sees no file or a whole one
    finally:
        tmp.unlink(missing_ok=True)
    log.info("made %s", place)
    return place


def open_engine(name: str, checkpoint: str | Path, ckpt: dict, model: CRNN, device: torch.device,
                threads: int = 1) -> Engine:
    """``torch``; ``onnx`` (the CPU only: the ONNX file is made if it is not there); or ``auto``: onnxruntime on a CPU
    where the file is there (the shipped model, each model a training job registers, any model read once with
    ``onnx``), torch otherwise. Making the file costs ~4.5 s, what onnxruntime saves over reading ~12,000 images:
    a checkpoint read once (a label-error fold, a self-training round) reads sooner with torch.
    ``threads``: the cores a batch read alone gets."""
    from ocr.checkpoint import ModelError

    if name not in ENGINES:
        raise ModelError(unknown_engine(name))
    if name == "onnx" and device.type != "cpu":
        raise ModelError(f"the onnx engine reads on the CPU; on {device} use --engine torch (or auto)")
    if name == "torch" or device.type != "cpu":
        return TorchEngine(model, device)
    found = find_onnx(checkpoint, ckpt, threads)
    if found is not None:
        return found
    return TorchEngine(model, device) if name == "auto" else OnnxEngine(make_onnx(checkpoint, ckpt, model), threads)


def unknown_engine(name: str) -> str:
    """The one line for a name that is not in ``ENGINES`` (the command lines, the jobs and ``open_engine`` say it)."""
    return f"unknown engine {name!r}; choose from {', '.join(ENGINES)}"
