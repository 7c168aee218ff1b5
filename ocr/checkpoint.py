"""A model on disk, read without any training code: the checkpoint file (atomic writes, weights-only reads), a model
folder or Hub id (``ocr.pretrained``), the model it rebuilds, its output layer grown to new characters, and the device
it runs on. Reading (``ocr.recognize``) and training (``ocr.training``) both load models here."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from ocr.alphabet import Alphabet
from ocr.model import CRNN, CRNNConfig
from ocr.preprocess import PreprocessConfig
from ocr.pretrained import PretrainedError, is_hub_id, load_pretrained

CHECKPOINT_VERSION = 1


class ModelError(RuntimeError):
    """A model file or device that cannot be used, with a message meant for the user."""


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} requested but no CUDA GPU is available")
    return device


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


CHECKPOINT_KEYS = ("model", "model_config", "alphabet", "preprocess")
RESUME_KEYS = ("train_config", "optimizer", "scheduler", "scaler", "run_state")


def load_checkpoint(path: str | Path, map_location="cpu", for_resume: bool = False) -> dict:
    """A checkpoint of this project, loaded without running any code it holds (``weights_only=True``: tensors, numbers,
    strings, lists and dicts only). Anything else, a pickle that would run code included, is a ``ModelError``.
    A model folder (``ocr.pretrained``: safetensors + config.json) or a Hub id (``hf://user/name``) loads too."""
    if Path(path).is_dir() or is_hub_id(path):  # a model folder (model.safetensors + config.json) or a Hub id
        if for_resume:
            raise ModelError(f"{path} is a model folder (weights only): a run resumes from its own last.pt")
        try:
            ckpt = load_pretrained(path)
        except PretrainedError as exc:
            raise ModelError(str(exc)) from None
        ckpt["model"] = {k: v.to(map_location) for k, v in ckpt["model"].items()}
        return ckpt
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # the weights-only unpickler met a reference to a Python callable or class
            raise ModelError(f"{path} is not a checkpoint of this project: it holds Python objects that would run "
                                "code when loaded, refused") from None
        raise ModelError(f"{path} is not a readable checkpoint (not a file of tensors, numbers and strings)") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file means the same thing to the user
        raise ModelError(f"{path} is not a readable checkpoint ({exc.__class__.__name__})") from None
    if isinstance(ckpt, dict) and "alphabet" not in ckpt and isinstance(ckpt.get("model_config"), dict):
        classes = ckpt["model_config"].get("num_classes")
        if classes != Alphabet().num_classes:
            raise ModelError(f"{path} has no character set, and its {classes} output classes are not the names "
                                f"set's {Alphabet().num_classes}: it cannot be read")
        ckpt["alphabet"] = Alphabet().chars  # saved before character sets were data: every model read the names set
    keys = CHECKPOINT_KEYS + (RESUME_KEYS if for_resume else ())
    missing = [k for k in keys if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ModelError(f"{path} is not a checkpoint of this project (missing {', '.join(missing)})"
                            + (" to resume from" if for_resume and isinstance(ckpt, dict) and "model" in ckpt else ""))
    bad = [k for k, kind in (("model", dict), ("model_config", dict), ("alphabet", str), ("preprocess", dict))
           if not isinstance(ckpt[k], kind)]
    if bad:
        raise ModelError(f"{path} is not a checkpoint of this project (malformed {', '.join(bad)})")
    return ckpt


def model_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu") -> tuple[CRNN, Alphabet, PreprocessConfig]:
    """The model, alphabet and preprocessing of a loaded checkpoint; a ``ModelError`` when they do not fit together."""
    try:
        model = CRNN(CRNNConfig.from_dict(ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
        alphabet, pre = Alphabet(ckpt["alphabet"]), PreprocessConfig(**ckpt["preprocess"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"the checkpoint's model does not load: {first}") from None
    model.to(device).eval()
    return model, alphabet, pre


NEW_CLASS_MARGIN = 10.0


def grow_head(ckpt: dict, alphabet: Alphabet) -> dict:
    """``ckpt`` with its output layer grown to ``alphabet`` (its own set with characters appended): the classes it
    knows keep their rows; a new class starts with zero weights and a bias ``NEW_CLASS_MARGIN`` below the lowest known
    one (a probability of ~1e-5 or less in any frame), so the model reads as before until training teaches it the
    new characters (CTC's alignment posterior of a label's character does not depend on its prior, so they learn)."""
    old = Alphabet(ckpt["alphabet"])
    if alphabet.chars[:len(old.chars)] != old.chars:
        raise ModelError("a grown character set must start with the model's own")
    weight, bias = ckpt["model"]["head.weight"], ckpt["model"]["head.bias"]
    extra = alphabet.num_classes - weight.shape[0]
    state = dict(ckpt["model"])
    state["head.weight"] = torch.cat([weight, weight.new_zeros(extra, weight.shape[1])])
    state["head.bias"] = torch.cat([bias, (bias.min() - NEW_CLASS_MARGIN).expand(extra)])
    return {**ckpt, "model": state, "alphabet": alphabet.chars,
            "model_config": {**ckpt["model_config"], "num_classes": alphabet.num_classes}}
