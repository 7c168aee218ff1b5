"""A model as a folder that leaves the project: ``model.safetensors`` (the weights; the format holds tensors only, so
reading it runs no code) and ``config.json`` (architecture, character set, preprocessing, figures, provenance). It is
the layout of ``huggingface_hub``'s ``PyTorchModelHubMixin``, so the Hub shows and downloads it like other models, and
every reader of a checkpoint here (``ocr.checkpoint.load_checkpoint``) takes such a folder, or a Hub id, as well.

The training labels (the ``labels`` language model's corpus) stay out unless asked for: they are the user's data,
often people's names, and a names model does not need them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

WEIGHTS, CONFIG = "model.safetensors", "config.json"
FORMAT, FORMAT_VERSION = "hwr-crnn", 1
HUB_PREFIX = "hf://"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class PretrainedError(ValueError):
    """A model folder or Hub id that cannot be read, in one line."""


def config_of(ckpt: dict, include_training_labels: bool = False) -> dict:
    """What ``config.json`` holds for a loaded checkpoint: everything but the weights and the optimiser's state."""
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_config": ckpt["model_config"],
              "alphabet": ckpt["alphabet"], "blank": 0, "preprocess": ckpt["preprocess"],
              "input": "float32 (N, 1, H, W), ink = 1 on 0 (ocr.preprocess)",
              "output": "logits (T, N, C), T = W // width_stride, class 0 the CTC blank, class i the alphabet's i-th"}
    for key in ("metrics", "provenance", "train_config"):
        if ckpt.get(key):
            config[key] = ckpt[key]
    if include_training_labels and ckpt.get("training_labels"):
        config["training_labels"] = ckpt["training_labels"]
    return config


def save_pretrained(ckpt: dict, out: str | Path, include_training_labels: bool = False) -> list[Path]:
    """Write ``out/model.safetensors`` and ``out/config.json`` for a loaded checkpoint (``ocr.checkpoint``)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in ckpt["model"].items()}
    save_file(weights, str(out / WEIGHTS), metadata={"format": "pt", "library": FORMAT})
    return [out / WEIGHTS, write_config(ckpt, out, include_training_labels)]


def write_config(ckpt: dict, out: Path, include_training_labels: bool = False) -> Path:
    """``out/config.json`` for a loaded checkpoint, written atomically (every export format writes it this way)."""
    tmp = out / f".{CONFIG}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(config_of(ckpt, include_training_labels), indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(out / CONFIG)
    return out / CONFIG


def is_hub_id(spec: str | Path) -> bool:
    """``hf://user/name``, or ``user/name`` where no such local path exists."""
    text = str(spec)
    if text.startswith(HUB_PREFIX):
        return True
    return bool(_REPO_ID.match(text)) and not Path(text).exists() and not text.endswith((".pt", ".pth"))


def check_repo_id(repo_id: str) -> str:
    """``user/name`` as the Hub spells it (``huggingface_hub``'s own check, plus the user part a model repo needs),
    or a ``PretrainedError`` saying what is wrong."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id = repo_id.removeprefix(HUB_PREFIX)
    try:
        validate_repo_id(repo_id)
        ok = repo_id.count("/") == 1
    except HFValidationError:
        ok = False
    if not ok:
        raise PretrainedError(f"{repo_id!r} is not a Hugging Face repo id: USER/NAME, letters, digits, '-', '_' and '.'")
    return repo_id


def download(repo_id: str, revision: str | None = None) -> Path:
    """The model folder of a Hub repo (from the local Hub cache when it is there); one line when it cannot be had."""
    from huggingface_hub import snapshot_download

    repo_id = check_repo_id(repo_id)
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=[WEIGHTS, CONFIG, "*.md"]))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, no access: one line whatever the cause
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise PretrainedError(f"could not download {repo_id} from the Hugging Face Hub ({exc.__class__.__name__}"
                              f"{': ' + first if first else ''})") from None


def load_pretrained(folder: str | Path) -> dict:
    """A model folder (or a Hub id) as a checkpoint dict: the weights from safetensors, the rest from config.json,
    checked against each other."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if is_hub_id(folder):
        try:
            folder = download(str(folder))
        except PretrainedError as exc:
            local = "" if str(folder).startswith(HUB_PREFIX) else "; and there is no such local file or folder"
            raise PretrainedError(f"{exc}{local}") from None
    folder = Path(folder)
    missing = [name for name in (CONFIG, WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise PretrainedError(f"model folder {folder} lacks {' and '.join(missing)}")
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise PretrainedError(f"{folder / CONFIG} is not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise PretrainedError(f"{folder / CONFIG} is not the config of a model of this project (format {FORMAT!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise PretrainedError(f"{folder} was written by a newer version (format {config['format_version']}); "
                              "update this project to read it")
    bad = [k for k, kind in (("model_config", dict), ("alphabet", str), ("preprocess", dict))
           if not isinstance(config.get(k), kind)]
    if bad:
        raise PretrainedError(f"{folder / CONFIG} lacks or garbles {', '.join(bad)}")
    try:
        weights = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PretrainedError(f"{folder / WEIGHTS} is not readable safetensors ({exc})") from None
    head = weights.get("head.weight")
    classes = len(config["alphabet"]) + 1
    if head is None or head.shape[0] != classes or config["model_config"].get("num_classes") != classes:
        rows = None if head is None else head.shape[0]
        raise PretrainedError(f"{folder}: the config's character set has {len(config['alphabet'])} characters "
                              f"({classes} classes with the blank), but the weights' output layer has {rows} rows")
    ckpt = {k: v for k, v in config.items() if k not in ("format", "format_version", "blank", "input", "output")}
    ckpt["model"] = weights
    return ckpt


CARD = "README.md"
_READ_WITH = re.compile(r"read with (.+?): \*\*exact match")


def card_results(folder: str | Path) -> dict | None:
    """What a model folder's card reports of its evaluation (its ``model-index``, ``ocr.sharing.publish``): exact
    match, CER, the data and the decoder; None for a folder without such a card."""
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD
    try:
        card = ModelCard.load(path)
    except Exception:  # noqa: BLE001 - no card, or one that does not parse: nothing to show
        return None
    results = {r.metric_type: r for r in card.data.eval_results or []}
    if "exact_match" not in results:
        return None
    decoder = _READ_WITH.search(card.text)
    return {"exact_match": results["exact_match"].metric_value, "cer": getattr(results.get("cer"), "metric_value", None),
            "dataset": results["exact_match"].dataset_name, "decoder": decoder.group(1) if decoder else None}


__all__ = ["CONFIG", "PretrainedError", "WEIGHTS", "card_results", "check_repo_id", "config_of", "download", "is_hub_id",
           "load_pretrained", "save_pretrained", "write_config"]
