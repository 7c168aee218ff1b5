"""Training a CRNN with CTC: plain functions, a callback interface, atomic checkpoints, exact resume.

The loop reports through ``Callback`` so the job runner can store metrics and request a stop
without touching it.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ocr.alphabet import BLANK, Alphabet
from ocr.augment import Augment, AugmentConfig
from ocr.config import SCHEDULERS, TrainConfig
from ocr.datasets import LineDataset, Sample, collate, data_fingerprint
from ocr.decode import ctc_min_length, greedy_decode
from ocr.metrics import cer, exact_match
from ocr.model import CRNN, CRNNConfig, preset
from ocr.preprocess import PreprocessConfig

CHECKPOINT_VERSION = 1


class TrainingError(RuntimeError):
    """A run that cannot go on, with a message meant for the user."""




class Callback:
    """Hooks called by ``fit``; override what you need."""

    def on_start(self, info: dict) -> None: ...

    def on_step(self, metrics: dict) -> None:
        """step, epoch, train_loss, lr, samples_per_s."""

    def on_epoch(self, metrics: dict) -> None:
        """epoch, step, train_loss, val_loss, val_exact_match, val_cer, seconds."""

    def on_checkpoint(self, path: Path, kind: str, metrics: dict) -> None:
        """kind is 'last' or 'best'."""

    def on_message(self, text: str) -> None: ...

    def should_stop(self) -> bool:
        return False


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but no CUDA GPU is available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def label_fit_problems(samples: list[Sample], cfg: CRNNConfig, widths: list[int]) -> list[str]:
    """Labels CTC cannot emit from their image: more characters (+ repeats) than time steps."""
    problems = []
    for s, w in zip(samples, widths):
        steps, need = cfg.output_length(w), ctc_min_length(s.label)
        if need > steps:
            problems.append(f"{s.name}: {s.label!r} needs {need} time steps, the image gives {steps}")
    return problems


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
    strings, lists and dicts only). Anything else, a pickle that would run code included, is a ``TrainingError``."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # the weights-only unpickler met a reference to a Python callable or class
            raise TrainingError(f"{path} is not a checkpoint of this project: it holds Python objects that would run "
                                "code when loaded, refused") from None
        raise TrainingError(f"{path} is not a readable checkpoint (not a file of tensors, numbers and strings)") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file means the same thing to the user
        raise TrainingError(f"{path} is not a readable checkpoint ({exc.__class__.__name__})") from None
    keys = CHECKPOINT_KEYS + (RESUME_KEYS if for_resume else ())
    missing = [k for k in keys if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise TrainingError(f"{path} is not a checkpoint of this project (missing {', '.join(missing)})"
                            + (" to resume from" if for_resume and isinstance(ckpt, dict) and "model" in ckpt else ""))
    bad = [k for k, kind in (("model", dict), ("model_config", dict), ("alphabet", str), ("preprocess", dict))
           if not isinstance(ckpt[k], kind)]
    if bad:
        raise TrainingError(f"{path} is not a checkpoint of this project (malformed {', '.join(bad)})")
    return ckpt


def model_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu") -> tuple[CRNN, Alphabet, PreprocessConfig]:
    """The model, alphabet and preprocessing of a loaded checkpoint; a ``TrainingError`` when they do not fit together."""
    try:
        model = CRNN(CRNNConfig.from_dict(ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
        alphabet, pre = Alphabet(ckpt["alphabet"]), PreprocessConfig(**ckpt["preprocess"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise TrainingError(f"the checkpoint's model does not load: {first}") from None
    model.to(device).eval()
    return model, alphabet, pre


def lr_factor(kind: str, step: int, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` at ``step`` of ``total_steps``.

    onecycle: cosine warm-up from lr/20 over the first 15 %, then cosine annealing to lr/4000 (OneCycleLR's shape).
    cosine: linear warm-up over 5 %, then cosine to 0.5 % of lr. The total is read at every step, so a run whose
    plan changes (``--max-minutes``) still ends its schedule on its last step.
    """
    total = max(1, total_steps)
    p = min(1.0, step / total)
    if kind == "onecycle":
        if p < 0.15:
            return 0.05 + 0.95 * 0.5 * (1 - math.cos(math.pi * p / 0.15))
        return 1 / 4000 + (1 - 1 / 4000) * 0.5 * (1 + math.cos(math.pi * (p - 0.15) / 0.85))
    if kind == "cosine":
        if p < 0.05:
            return (step + 1) / max(1, 0.05 * total)
        return 0.005 + 0.995 * 0.5 * (1 + math.cos(math.pi * (p - 0.05) / 0.95))
    return 1.0


def _scheduler(opt, cfg: TrainConfig, total_steps):
    """``total_steps`` is a callable: the schedule follows the current plan."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=2)
    if cfg.scheduler in ("onecycle", "cosine", "constant"):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(cfg.scheduler, step, total_steps()))
    raise TrainingError(f"unknown scheduler {cfg.scheduler!r}; choose from {', '.join(SCHEDULERS)}")


def ctc_loss(logits: torch.Tensor, targets, input_lengths, target_lengths) -> torch.Tensor:
    log_probs = logits.float().log_softmax(2)
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=BLANK, reduction="mean",
                      zero_infinity=False)


@torch.no_grad()
def evaluate_loader(model: CRNN, loader: DataLoader, alphabet: Alphabet, device: torch.device) -> dict:
    """Validation loss, exact match and CER over a loader (greedy decoding)."""
    model.eval()
    losses, labels, preds = [], [], []
    for images, widths, targets, lengths in loader:
        images = images.to(device, non_blocking=True)
        logits = model(images)
        in_len = model.output_lengths(widths)
        loss = ctc_loss(logits, targets, in_len, lengths)
        if torch.isfinite(loss):
            losses.append(float(loss) * len(widths))
        preds += [p.text for p in greedy_decode(logits, in_len, alphabet)]
        offs = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        labels += [alphabet.decode(targets[offs[i]:offs[i + 1]].tolist()) for i in range(len(lengths))]
    return {
        "val_loss": sum(losses) / max(1, len(labels)),
        "val_exact_match": exact_match(labels, preds),
        "val_cer": cer(labels, preds),
        "n_val": len(labels),
    }


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0
    best_cer: float = math.inf
    planned_epochs: int = 0
    history: list = field(default_factory=list)


def fit(
    train_samples: list[Sample],
    val_samples: list[Sample],
    out_dir: str | Path,
    cfg: TrainConfig = TrainConfig(),
    alphabet: Alphabet = Alphabet(),
    init: str | Path | None = None,
    resume: bool = False,
    callback: Callback | None = None,
    progress: bool = True,
) -> dict:
    """Train and write ``out_dir/{last,best}.pt`` and ``metrics.jsonl``. Returns the final summary."""
    cb = callback or Callback()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = RunState()
    resumed: dict | None = None
    if resume:
        resumed = load_checkpoint(out / "last.pt", for_resume=True)
        model_from_checkpoint(resumed)  # its parts fit together, or one clear error
        try:
            cfg = TrainConfig(**resumed["train_config"])  # the run continues as it was planned
            RunState(**resumed["run_state"])
        except TypeError as exc:
            raise TrainingError(f"{out / 'last.pt'}: its training state does not fit this version ({exc})") from None
        alphabet = Alphabet(resumed["alphabet"])
    if cfg.scheduler not in SCHEDULERS:
        raise TrainingError(f"unknown scheduler {cfg.scheduler!r}; choose from {', '.join(SCHEDULERS)}")
    device = select_device(cfg.device)
    seed_everything(cfg.seed)

    if resumed is not None:
        model_cfg = CRNNConfig.from_dict(resumed["model_config"])
    elif init is not None:
        base = load_checkpoint(init)
        model_from_checkpoint(base)
        if base["alphabet"] != alphabet.chars:
            raise TrainingError(f"{init}: its alphabet {base['alphabet']!r} differs from this run's {alphabet.chars!r}")
        model_cfg = CRNNConfig.from_dict(base["model_config"])
    else:
        model_cfg = preset(cfg.preset, alphabet.num_classes)
    pre = PreprocessConfig(height=model_cfg.height)

    if not train_samples:
        raise TrainingError("no usable training samples")
    if not val_samples:
        raise TrainingError("no validation samples (give --val, or more than one training sample)")
    cb.on_message(f"decoding {len(train_samples) + len(val_samples):,} images into memory")
    train_ds = LineDataset(train_samples, alphabet, pre, Augment(AugmentConfig()) if cfg.augment else None)
    val_ds = LineDataset(val_samples, alphabet, pre)
    for name, ds in (("training", train_ds), ("validation", val_ds)):
        problems = label_fit_problems(ds.samples, model_cfg, [im.shape[1] for im in ds.images])
        if problems:
            keep = [i for i, (s, im) in enumerate(zip(ds.samples, ds.images))
                    if ctc_min_length(s.label) <= model_cfg.output_length(im.shape[1])]
            cb.on_message(f"{len(problems)} {name} label(s) longer than the model can emit, left out: "
                          + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
            ds.keep(keep)
    if not len(train_ds) or not len(val_ds):
        raise TrainingError("no sample left whose label fits the model's output length")

    workers = cfg.workers if cfg.workers >= 0 else (4 if device.type == "cuda" else 0)
    loader_gen = torch.Generator()
    on_device = cfg.data_on_device if cfg.data_on_device is not None else device.type == "cuda"
    if on_device:
        from ocr.device_data import DeviceBatches

        train_loader = DeviceBatches(train_ds.images, train_ds.targets, device, cfg.batch_size,
                                     AugmentConfig() if cfg.augment else None, drop_last=len(train_ds) > cfg.batch_size)
        workers = 0
    else:
        train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate,
                                  num_workers=workers, generator=loader_gen, drop_last=len(train_ds) > cfg.batch_size,
                                  pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    val_loader = DataLoader(val_ds, batch_size=max(64, cfg.batch_size), shuffle=False, collate_fn=collate,
                            num_workers=workers, pin_memory=device.type == "cuda")

    model = CRNN(model_cfg).to(device)
    if resumed is None and init is not None:
        model.load_state_dict(base["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_per_epoch = len(train_loader)

    if resumed is not None:
        state = RunState(**resumed["run_state"])
    else:
        state.planned_epochs = cfg.epochs
        if cfg.max_minutes is not None:
            state.planned_epochs = min(cfg.epochs, _plan_epochs(model, train_loader, val_ds, cfg, device, cb))
    sched = _scheduler(opt, cfg, lambda: state.planned_epochs * steps_per_epoch)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["optimizer"])
        sched.load_state_dict(resumed["scheduler"])
        scaler.load_state_dict(resumed["scaler"])
        cb.on_message(f"resuming after epoch {state.epoch} (step {state.step}) of {state.planned_epochs}")

    fingerprint = data_fingerprint(train_ds.samples)
    info = {"device": str(device), "model": model_cfg.describe(), "parameters": sum(p.numel() for p in model.parameters()),
            "train_samples": len(train_ds), "val_samples": len(val_ds), "epochs": state.planned_epochs,
            "steps_per_epoch": steps_per_epoch, "data_fingerprint": fingerprint, "amp": use_amp,
            "data_on_device": on_device}
    cb.on_start(info)
    log = (out / "metrics.jsonl").open("a", encoding="utf-8")

    def write(record: dict) -> None:
        log.write(json.dumps(record) + "\n")
        log.flush()

    write({"type": "start", "time": time.time(), **info, "train_config": asdict(cfg)})
    if cfg.diagnose:
        _diagnose(model, train_loader, model_cfg, cb)

    def snapshot() -> dict:
        return {
            "version": CHECKPOINT_VERSION, "model": model.state_dict(), "model_config": model_cfg.to_dict(),
            "alphabet": alphabet.chars, "preprocess": asdict(pre), "train_config": asdict(cfg),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
            "run_state": asdict(state), "data_fingerprint": fingerprint, "metrics": state.history[-1] if state.history else {},
        }

    started = time.monotonic()
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes is not None else math.inf
    bad_in_a_row = 0
    stopped = None
    try:
        while state.epoch < state.planned_epochs and stopped is None:
            epoch = state.epoch + 1
            # per-epoch seeds: a run resumed at an epoch boundary sees the same shuffles, augmentations, dropout
            loader_gen.manual_seed(cfg.seed * 100_003 + epoch)
            if on_device:
                train_loader.seed(cfg.seed * 100_003 + epoch)
            torch.manual_seed(cfg.seed * 7919 + epoch)
            model.train()
            t0 = time.monotonic()
            seen, loss_sum, loss_n = 0, 0.0, 0
            window_t, window_n = time.monotonic(), 0
            bar = _progress(steps_per_epoch, f"epoch {epoch}/{state.planned_epochs}", progress)
            for images, widths, targets, lengths in train_loader:
                images = images.to(device, non_blocking=True)
                in_len = model.output_lengths(widths)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    logits = model(images)
                loss = ctc_loss(logits, targets, in_len, lengths)
                opt.zero_grad(set_to_none=True)
                if not torch.isfinite(loss):
                    bad_in_a_row += 1
                    cb.on_message(f"step {state.step}: non-finite loss ({loss.item()}), batch skipped")
                    write({"type": "bad_batch", "step": state.step, "loss": str(loss.item())})
                    if bad_in_a_row >= cfg.max_bad_batches:
                        raise TrainingError(f"{bad_in_a_row} batches in a row gave a non-finite loss; "
                                            "lower the learning rate or check the labels")
                    continue
                bad_in_a_row = 0
                loss_value = loss.item()
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                if cfg.scheduler != "plateau":
                    sched.step()
                state.step += 1
                n = len(widths)
                seen += n
                window_n += n
                loss_sum += loss_value * n
                loss_n += n
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.3f}")
                if state.step % cfg.log_every == 0:
                    now = time.monotonic()
                    m = {"type": "step", "step": state.step, "epoch": epoch, "planned_epochs": state.planned_epochs,
                         "train_loss": loss_value,
                         "lr": opt.param_groups[0]["lr"], "samples_per_s": window_n / max(1e-9, now - window_t)}
                    window_t, window_n = now, 0
                    write(m)
                    cb.on_step(m)
                if cb.should_stop():
                    stopped = "stop requested"
                    break
                if time.monotonic() > deadline:
                    stopped = "time budget reached"
                    break
            if bar is not None:
                bar.close()
            if stopped is not None and seen < len(train_ds) // 2:
                break  # a partial epoch is not a finished epoch: keep the last complete one
            val = evaluate_loader(model, val_loader, alphabet, device)
            if cfg.scheduler == "plateau":
                sched.step(val["val_cer"])
            state.epoch = epoch
            m = {"type": "epoch", "epoch": epoch, "planned_epochs": state.planned_epochs, "step": state.step,
                 "train_loss": loss_sum / max(1, loss_n),
                 **val, "lr": opt.param_groups[0]["lr"], "seconds": time.monotonic() - t0}
            state.history.append(m)
            write(m)
            cb.on_epoch(m)
            is_best = val["val_cer"] < state.best_cer
            if is_best:
                state.best_cer = val["val_cer"]
            if epoch == 1 and resumed is None and cfg.max_minutes is not None:
                # re-plan from the measured first epoch, so the schedule ends when the budget does
                per_epoch = time.monotonic() - started
                fits = max(1, int((deadline - started) * 0.98 / per_epoch))
                if fits != state.planned_epochs:
                    cb.on_message(f"re-planned: {min(cfg.epochs, fits)} epoch(s) of {per_epoch:.0f} s fit the budget")
                    state.planned_epochs = min(cfg.epochs, fits)
            snap = snapshot()
            save_checkpoint(out / "last.pt", snap)
            cb.on_checkpoint(out / "last.pt", "last", m)
            if is_best:
                save_checkpoint(out / "best.pt", snap)
                cb.on_checkpoint(out / "best.pt", "best", m)
    finally:
        write({"type": "end", "time": time.time(), "epoch": state.epoch, "step": state.step,
               "stopped": stopped, "best_val_cer": state.best_cer if state.best_cer < math.inf else None})
        log.close()
    best = min(state.history, key=lambda h: h["val_cer"]) if state.history else {}
    return {**info, "planned_epochs": state.planned_epochs, "epochs": state.epoch, "steps": state.step,
            "stopped": stopped, "best": best, "last": state.history[-1] if state.history else {}}


def _plan_epochs(model: CRNN, loader: DataLoader, val_ds, cfg: TrainConfig, device, cb: Callback) -> int:
    """Epochs that fit in ``cfg.max_minutes``, from the timed speed of a few real training steps on a copy."""
    import copy

    probe = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(probe.parameters(), lr=0.0)
    rng_state = torch.get_rng_state()
    times, n_seen = [], 0
    for i, (images, widths, targets, lengths) in enumerate(loader):
        t = time.perf_counter()
        logits = probe(images.to(device))
        loss = ctc_loss(logits, targets, probe.output_lengths(widths), lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:  # the first steps pay for allocations and warm-up
            times.append(time.perf_counter() - t)
            n_seen += len(widths)
        if i >= 12:
            break
    torch.set_rng_state(rng_state)
    per_sample = sum(times) / max(1, n_seen) if times else 1e-3
    epoch_s = per_sample * len(loader.dataset) * 1.05 + per_sample / 3 * len(val_ds)  # + loader, + validation
    epochs = max(1, int(cfg.max_minutes * 60 * 0.95 / epoch_s))
    cb.on_message(f"planned {epochs} epoch(s) of ~{epoch_s:.0f} s for a {cfg.max_minutes:g}-minute budget")
    return epochs


def _diagnose(model: CRNN, loader: DataLoader, model_cfg: CRNNConfig, cb: Callback, batches: int = 3) -> None:
    model.eval()
    with torch.no_grad():
        for i, (images, widths, targets, lengths) in enumerate(loader):
            logits = model(images)
            in_len = model.output_lengths(widths)
            loss = F.ctc_loss(logits.log_softmax(2), targets, in_len, lengths, blank=BLANK, reduction="none")
            hist = Counter(lengths.tolist())
            cb.on_message(
                f"[diagnose] batch {i}: input {tuple(images.shape)} range [{images.min():.2f}, {images.max():.2f}], "
                f"logits {tuple(logits.shape)}, logit lengths {in_len.min().item()}-{in_len.max().item()}, "
                f"label lengths {dict(sorted(hist.items()))}, loss per sample min {loss.min():.2f} "
                f"mean {loss.mean():.2f} max {loss.max():.2f}, non-finite {int((~torch.isfinite(loss)).sum())}"
            )
            if i + 1 >= batches:
                break
    model.train()


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)
