"""Self-training: a first model, trained on the labelled data, reads the unlabelled pool; the readings it is confident
of become pseudo-labels, and a second phase fine-tunes from it on the labels plus the pseudo-labels (the classic
teacher / student recipe; on the real Kaggle names it lifts exact match by ~10 points, see README).

Pseudo-labels never become labels: they live in ``out/pseudo_labels.csv`` and in the callback's
``on_pseudo_labels`` (the job runner stores them as predictions of the first model), and the final checkpoint
records where they came from under ``provenance``.

    out/teacher/   the first phase (its own last.pt / best.pt / metrics.jsonl)
    out/           the second phase: the run's last.pt / best.pt, pseudo_labels.csv, self_training.json
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ocr.alphabet import Alphabet
from ocr.checkpoint import select_device
from ocr.data.datasets import Sample
from ocr.decoding.decoder import DecoderConfig
from ocr.training.config import TrainConfig
from ocr.training.loop import Callback, Stop, TrainingError, fit

MIN_PSEUDO_LENGTH = 2  # a one-letter reading of a name field is more often a stray mark than a name


@dataclass(frozen=True)
class PseudoLabel:
    path: Path
    text: str
    confidence: float  # P(text | image) under the pool decoder


def pool_decoder(cfg: TrainConfig) -> DecoderConfig:
    """How the pool is read: beam search with ``cfg.pseudo_lm`` (the names language model by default), or greedy, at
    ``cfg.pseudo_views`` views of each image."""
    return DecoderConfig(lm=cfg.pseudo_lm, views=cfg.pseudo_views)


def check_self_training(cfg: TrainConfig, pool: list[Path] | None) -> None:
    """Refuse a self-training run that cannot work, before anything is written (``pool`` None: already read)."""
    if cfg.self_train > 0 and pool is not None and not pool:
        raise TrainingError("self-training needs unlabelled images, and the pool given has none")


def read_pool(checkpoint: str | Path, pool: list[Path], cfg: TrainConfig, device: str = "cpu",
              callback: Callback | None = None, batch_size: int = 128,
              processes: int | None = None) -> tuple[list[PseudoLabel], dict]:
    """The pool read with ``checkpoint`` and the pool decoder (on ``processes`` decoding processes, or as many as the
    pool is worth: ``Recognizer.decoder``); returns the readings at or above the threshold and counts (read, kept,
    unreadable images). Images that cannot be read are counted and left out."""
    from ocr.recognize import Recognizer

    cb = callback or Callback()
    rec = Recognizer(checkpoint, device=device)
    t0 = time.monotonic()
    with rec.decoder(pool_decoder(cfg), images=len(pool), processes=processes) as decoder:
        readings = rec.score_files(pool, decoder=decoder, batch_size=batch_size, should_stop=cb.should_stop)
    kept = [PseudoLabel(Path(path), r.text, r.confidence) for path, r in zip(pool, readings)
            if r is not None and r.confidence >= cfg.pseudo_threshold and len(r.text) >= MIN_PSEUDO_LENGTH]
    read = sum(r is not None for r in readings)
    unreadable = len(readings) - read
    counts = {"pool": len(pool), "read": read, "kept": len(kept), "unreadable": unreadable,
              "threshold": cfg.pseudo_threshold, "decoder": pool_decoder(cfg).describe(),
              "seconds": round(time.monotonic() - t0, 1)}
    cb.on_message(f"pseudo-labels: {len(kept):,} of {read:,} unlabelled images read at P >= {cfg.pseudo_threshold:g} "
                  f"({counts['decoder']}, {counts['seconds']:.0f} s)")
    return kept, counts


class _Phase(Callback):
    """Passes a phase's reports on as one run: the second phase's epochs and steps follow the first's."""

    def __init__(self, inner: Callback, phase: str, epochs_before: int = 0, steps_before: int = 0,
                 checkpoints: bool = True):
        self.inner, self.phase, self.e0, self.s0, self.checkpoints = inner, phase, epochs_before, steps_before, checkpoints

    def _shift(self, m: dict) -> dict:
        m = {**m, "phase": self.phase}
        for key, offset in (("epoch", self.e0), ("planned_epochs", self.e0), ("step", self.s0)):
            if key in m:
                m[key] += offset
        return m

    def on_start(self, info: dict) -> None:
        self.inner.on_start({**info, "epochs": info["epochs"] + self.e0, "phase": self.phase})

    def on_step(self, metrics: dict) -> None:
        self.inner.on_step(self._shift(metrics))

    def on_epoch(self, metrics: dict) -> None:
        self.inner.on_epoch(self._shift(metrics))

    def on_checkpoint(self, path: Path, kind: str, metrics: dict) -> None:
        if self.checkpoints:
            self.inner.on_checkpoint(path, kind, self._shift(metrics))

    def on_message(self, text: str) -> None:
        self.inner.on_message(f"[{self.phase}] {text}")

    def should_stop(self) -> bool:
        return self.inner.should_stop()


def _phase_configs(cfg: TrainConfig) -> tuple[TrainConfig, TrainConfig]:
    """The first phase gets ``1 - self_train`` of the epochs or of the budget; the second the rest, at half the LR."""
    first_epochs = max(1, round(cfg.epochs * (1 - cfg.self_train)))
    first = replace(cfg, epochs=first_epochs,
                    max_minutes=cfg.max_minutes * (1 - cfg.self_train) if cfg.max_minutes else None)
    second = replace(cfg, epochs=max(1, cfg.epochs - first_epochs), lr=cfg.lr / 2)
    return first, second


def _write_pseudo(path: Path, labels: list[PseudoLabel]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "text", "confidence"])
        w.writerows([str(p.path), p.text, f"{p.confidence:.6f}"] for p in labels)
    tmp.replace(path)


def _read_pseudo(path: Path) -> list[PseudoLabel]:
    with path.open(newline="", encoding="utf-8") as f:
        return [PseudoLabel(Path(r["path"]), r["text"], float(r["confidence"])) for r in csv.DictReader(f)]


def fit_self_training(train_samples: list[Sample], val_samples: list[Sample], pool: list[Path], out_dir: str | Path,
                      cfg: TrainConfig, alphabet: Alphabet | None = None, init: str | Path | None = None,
                      resume: bool = False, callback: Callback | None = None, progress: bool = False,
                      teacher: str | Path | None = None) -> dict:
    """``fit`` with a self-training phase when ``cfg.self_train`` > 0 (else plain ``fit``). Resumes either phase.

    ``teacher``: a model that already reads well (the current model of a labelling loop) reads the pool instead of a
    first phase trained for it; the whole run then trains on the labels plus its pseudo-labels, from ``init``."""
    out = Path(out_dir)
    teacher_dir, record = out / "teacher", out / "self_training.json"
    saved = json.loads(record.read_text()) if resume and record.exists() else None
    if saved is not None:
        cfg = TrainConfig.from_dict(saved["config"])  # the run goes on as it was planned
    pool_read = saved is not None and "pseudo_labels" in saved
    check_self_training(cfg, None if pool_read else pool)
    if cfg.self_train == 0:
        return fit(train_samples, val_samples, out_dir, cfg, alphabet, init, resume, callback, progress)
    cb = callback or Callback()
    started = time.monotonic()
    first_cfg, second_cfg = _phase_configs(cfg)
    if pool_read:
        state = saved
        pseudo = _read_pseudo(out / "pseudo_labels.csv")
    else:
        out.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"config": asdict(cfg)}, indent=1))
        if teacher is not None:  # a model given reads the pool: no first phase
            first: dict = {}
            reader, device = Path(teacher), str(select_device(cfg.device))
            phase = {"teacher_given": True, "teacher_epochs": 0, "teacher_steps": 0, "teacher_best": {},
                     "charset_added": ""}
        else:
            first = fit(train_samples, val_samples, teacher_dir, first_cfg, alphabet, init,
                        resume and (teacher_dir / "last.pt").exists(), _Phase(cb, "teacher", checkpoints=False),
                        progress)
            if first.get("stopped") == Stop.REQUESTED:
                return {**first, "self_training": None}
            reader, device = teacher_dir / "best.pt", first["device"]
            phase = {"teacher_epochs": first["epochs"], "teacher_steps": first["steps"],
                     "teacher_best": first["best"], "charset_added": first.get("charset_added", "")}
        pseudo, counts = read_pool(reader, pool, cfg, device, cb)
        if cb.should_stop():  # a part of the pool is not a reading of it: a resume reads it again
            return {"epochs": 0, **first, "stopped": Stop.REQUESTED, "self_training": None}
        state = {"config": asdict(cfg), "pseudo_labels": counts["kept"], **counts, "teacher": str(reader), **phase}
        _write_pseudo(out / "pseudo_labels.csv", pseudo)
        record.write_text(json.dumps(state, indent=1))
        if hasattr(cb, "on_pseudo_labels"):
            cb.on_pseudo_labels(reader, pseudo, state)
    given_teacher = state.get("teacher_given", False)
    if given_teacher:  # the whole run is the student, less the time the pool took to read
        second_cfg = cfg if not cfg.max_minutes else \
            replace(cfg, max_minutes=max(cfg.max_minutes - state["seconds"] / 60, cfg.max_minutes / 2))
    elif cfg.max_minutes:
        spent = (time.monotonic() - started) / 60 if not resume else cfg.max_minutes * (1 - cfg.self_train)
        second_cfg = replace(second_cfg, max_minutes=max(cfg.max_minutes - spent, cfg.max_minutes * cfg.self_train / 2))
    students = [Sample(p.path, p.text, "pseudo") for p in pseudo]
    provenance = {"self_training": {k: v for k, v in state.items() if k not in ("teacher_best", "config")}
                  | {"teacher_val_cer": state["teacher_best"].get("val_cer"), "share": cfg.self_train}}
    second = fit(train_samples + students, val_samples, out, second_cfg, alphabet,
                 init if given_teacher else teacher_dir / "best.pt",
                 resume and (out / "last.pt").exists(),
                 _Phase(cb, "self-training", state["teacher_epochs"], state["teacher_steps"]), progress,
                 provenance=provenance)
    return {**second, "self_training": provenance["self_training"], "charset_added": state.get("charset_added", ""),
            "epochs": second["epochs"] + state["teacher_epochs"]}


def completed_epochs(out_dir: str | Path) -> int | None:
    """Epochs a run in ``out_dir`` has finished, counted as one run across both phases; None: nothing to resume."""
    from ocr.checkpoint import load_checkpoint

    out = Path(out_dir)
    record = out / "self_training.json"
    state = json.loads(record.read_text()) if record.exists() else {}
    if (out / "last.pt").exists():
        done = load_checkpoint(out / "last.pt", for_resume=True)["run_state"]["epoch"]
        return done + state.get("teacher_epochs", 0) if "pseudo_labels" in state else done
    if "pseudo_labels" in state:
        return state["teacher_epochs"]
    if (out / "teacher" / "last.pt").exists():
        return load_checkpoint(out / "teacher" / "last.pt", for_resume=True)["run_state"]["epoch"]
    return None


def pool_files(folder: str | Path) -> list[Path]:
    """The images under a folder (any depth), for ``ocr train --unlabelled``."""
    from ocr.data.datasets import image_files

    root = Path(folder)
    if not root.is_dir():
        raise TrainingError(f"{root}: not a folder of unlabelled images")
    return image_files(root)


__all__ = ["PseudoLabel", "check_self_training", "completed_epochs", "fit_self_training", "pool_decoder", "pool_files",
           "read_pool"]
