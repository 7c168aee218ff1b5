"""Training a CRNN with CTC: plain functions, a callback interface, atomic checkpoints, exact resume.

The loop reports through ``Callback`` so the job runner can store metrics and request a stop
without touching it.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ocr.alphabet import BLANK, Alphabet, CharsetError, resolve_charset, unusable_chars
from ocr.checkpoint import CHECKPOINT_VERSION, grow_head, load_checkpoint, model_from_checkpoint, save_checkpoint, select_device
from ocr.data.augment import AugmentConfig
from ocr.data.batches import Batches, LoaderBatches
from ocr.data.datasets import LineDataset, Sample, data_fingerprint
from ocr.decoding.ctc import ctc_min_length, greedy_decode
from ocr.engines import TorchEngine
from ocr.evaluation.metrics import edit_distance
from ocr.model import CRNN, CRNNConfig, preset
from ocr.recognize import read_arrays
from ocr.training.averaging import averaged, restore
from ocr.training.config import TrainConfig
from ocr.training.distributed import SINGLE, Ranks, start, wrap


class TrainingError(RuntimeError):
    """A run that cannot go on, with a message meant for the user."""


class Stop(StrEnum):
    """Why a run ended before its plan: what the summary's ``stopped`` holds (None: it ran its plan)."""

    REQUESTED = "stop requested"
    BUDGET = "time budget reached"


class Callback:
    """Hooks called by ``fit`` (and by the runs built on it); override what you need."""

    def on_start(self, info: dict) -> None: ...

    def on_step(self, metrics: dict) -> None:
        """step, epoch, train_loss, lr, samples_per_s."""

    def on_epoch(self, metrics: dict) -> None:
        """epoch, step, train_loss, val_loss, val_exact_match, val_cer, seconds."""

    def on_checkpoint(self, path: Path, kind: str, metrics: dict) -> None:
        """kind is 'last' or 'best'."""

    def on_message(self, text: str) -> None: ...

    def on_progress(self, done: int, total: int, unit: str) -> None:
        """A long task's structured progress: ``done`` of ``total`` ``unit``s (e.g. 2 of 4 folds scored)."""

    def should_stop(self) -> bool:
        return False


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


def scaled_lr(lr: float, ranks: int) -> float:
    """The learning rate of a run over ``ranks`` processes, each taking batches of the configured size: the run's
    batch is ``ranks`` times larger, and for Adam-type optimizers the rate grows with its square root (Malladi et al.,
    "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms", 2022)."""
    return lr * math.sqrt(ranks)


def _rescale_for_ranks(opt, sched, state: RunState, cfg: TrainConfig, world: int, steps_per_epoch: int) -> None:
    """A run resumed on another number of ranks takes another number of steps an epoch at another peak rate: it
    continues at the same point of its schedule (epochs done of planned) at the rate of its new effective batch."""
    if state.ranks == world:
        return
    base, before = scaled_lr(cfg.lr, world), scaled_lr(cfg.lr, state.ranks)
    for group in opt.param_groups:
        group["initial_lr"] = base
        group["lr"] *= base / before  # ReduceLROnPlateau keeps its reductions
    if cfg.scheduler != "plateau":
        sched.base_lrs = [base] * len(opt.param_groups)
        sched.last_epoch = state.epoch * steps_per_epoch
        for group in opt.param_groups:
            group["lr"] = base * lr_factor(cfg.scheduler, sched.last_epoch, state.planned_epochs * steps_per_epoch)
    state.ranks = world


def _scheduler(opt, cfg: TrainConfig, total_steps):
    """``total_steps`` is a callable: the schedule follows the current plan."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=2)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(cfg.scheduler, step, total_steps()))


def ctc_loss(logits: torch.Tensor, targets, input_lengths, target_lengths) -> torch.Tensor:
    log_probs = logits.float().log_softmax(2)
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=BLANK, reduction="mean",
                      zero_infinity=False)


def validate(model: CRNN, val_ds: LineDataset, alphabet: Alphabet, device: torch.device, batch_size: int,
             ranks: Ranks = SINGLE) -> dict:
    """Validation loss, exact match and CER (greedy decoding), the images read by ``ocr.recognize.read_arrays``: the
    figures ``ocr evaluate`` reports for the same images with the same weights. Each rank reads its share; the sums
    (loss, exact readings, edits, label characters, images) are added over the ranks before any ratio is taken."""
    mine = ranks.share(len(val_ds))
    engine = TorchEngine(model, device)
    loss_sum, exact, edits, chars = 0.0, 0, 0, 0
    for first in range(0, len(mine), batch_size):
        items = [val_ds[i] for i in mine[first:first + batch_size]]
        logits, in_len, _ = read_arrays(engine, [im for im, _ in items], model.cfg)
        targets = torch.tensor([c for _, t in items for c in t], dtype=torch.long)
        lengths = torch.tensor([len(t) for _, t in items], dtype=torch.long)
        loss = ctc_loss(logits, targets, in_len, lengths)
        if torch.isfinite(loss):
            loss_sum += float(loss) * len(items)
        preds = [p.text for p in greedy_decode(logits, in_len, alphabet)]
        labels = [alphabet.decode(t) for _, t in items]
        exact += sum(a == b for a, b in zip(labels, preds))
        edits += sum(edit_distance(a, b) for a, b in zip(labels, preds))
        chars += sum(len(a) for a in labels)
    loss_sum, exact, edits, chars, n = ranks.sum([loss_sum, exact, edits, chars, len(mine)])
    return {"val_loss": loss_sum / max(1, n), "val_exact_match": exact / max(1, n), "val_cer": edits / max(1, chars),
            "n_val": int(n)}


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0
    best_cer: float = math.inf
    planned_epochs: int = 0
    history: list = field(default_factory=list)
    ranks: int = 1  # processes the run trained on so far (a resume may take another number)


# --- setup ------------------------------------------------------------------------------------------------------------

@dataclass
class Precision:
    """How forward passes run: fp32, or ``torch.autocast`` with bfloat16 or float16 (float16 with a gradient scaler).
    bfloat16 runs on the CPU too, so the autocast path a GPU takes is the one the CPU tests take."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type if self.name == "fp16" else "cpu", enabled=self.name == "fp16")


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto``: bfloat16 on a GPU that has it, else float16 there; fp32 on the CPU (bf16 is asked for explicitly).
    ``name`` is a ``TrainConfig.precision`` (which checks it is one of the names)."""
    if name == "auto":
        name = "fp32"
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp16" and device.type != "cuda":
        raise TrainingError("fp16 mixed precision needs a CUDA GPU; use bf16 on the CPU")
    return Precision(name, device.type)


def training_batches(train_ds: LineDataset, cfg: TrainConfig, device: torch.device) -> Batches | LoaderBatches:
    """``Batches`` on the device (the default on CUDA) or ``LoaderBatches`` (built by CPU workers): the same batches."""
    on_device = cfg.data_on_device if cfg.data_on_device is not None else device.type == "cuda"
    batches = Batches(train_ds.images, train_ds.targets, cfg.batch_size, AugmentConfig() if cfg.augment else None,
                      device if on_device else torch.device("cpu"))
    if on_device:
        return batches
    workers = cfg.workers if cfg.workers >= 0 else (4 if device.type == "cuda" else 0)
    return LoaderBatches(batches, workers, pin_memory=device.type == "cuda")


def _resolve_run(out: Path, cfg: TrainConfig, alphabet: Alphabet | None, init, resume: bool, labels: list[str]):
    """(config, alphabet, model config, checkpoint resumed from, checkpoint initialised from, characters added) of the
    run. A resumed run keeps its set; a fine-tune takes its start model's and, with ``cfg.grow_charset``, appends the
    characters of ``labels`` it lacks (``grow_head``); a new model takes ``alphabet`` or ``cfg.charset``."""
    resumed = base = None
    if resume:
        resumed = load_checkpoint(out / "last.pt", for_resume=True)
        model_from_checkpoint(resumed)  # its parts fit together, or one clear error
        try:
            cfg = TrainConfig.from_dict(resumed["train_config"])  # the run continues as it was planned
            RunState(**resumed["run_state"])
        except TypeError as exc:
            raise TrainingError(f"{out / 'last.pt'}: its training state does not fit this version ({exc})") from None
        alphabet = Alphabet(resumed["alphabet"])
        return cfg, alphabet, CRNNConfig.from_dict(resumed["model_config"]), resumed, None, ""
    if init is not None:
        base = load_checkpoint(init)
        model_from_checkpoint(base)
        known = Alphabet(base["alphabet"])
        if alphabet is not None and alphabet.chars != known.chars:
            raise TrainingError(f"{init}: its character set {known.chars!r} differs from this run's {alphabet.chars!r}")
        added = "".join(c for c in known.missing(labels) if not unusable_chars(c)) if cfg.grow_charset else ""
        if added:
            base = grow_head(base, known.grow(added))
        return cfg, Alphabet(base["alphabet"]), CRNNConfig.from_dict(base["model_config"]), None, base, added
    if alphabet is None:
        try:
            alphabet = resolve_charset(cfg.charset, labels)
        except CharsetError as exc:
            raise TrainingError(f"character set: {exc}") from None
    return cfg, alphabet, preset(cfg.preset, alphabet.num_classes), None, None, ""


def _encodable(samples: list[Sample], alphabet: Alphabet, name: str, cb: Callback) -> list[Sample]:
    """The samples whose labels the model's character set can write; the others are left out with a message."""
    keep = [s for s in samples if not alphabet.invalid_chars(s.label)]
    if len(keep) < len(samples):
        lacking = alphabet.missing(s.label for s in samples)
        cb.on_message(f"{len(samples) - len(keep):,} {name} label(s) with characters outside the model's set "
                      f"({' '.join(repr(c) for c in lacking)}), left out")
    return keep


def _datasets(train_samples: list[Sample], val_samples: list[Sample], alphabet: Alphabet, model_cfg: CRNNConfig,
              cfg: TrainConfig, cb: Callback) -> tuple[LineDataset, LineDataset]:
    """Both sets decoded into memory, without the labels the model cannot emit (reported)."""
    if not train_samples:
        raise TrainingError("no usable training samples")
    if not val_samples:
        raise TrainingError("no validation samples (give --val, or more than one training sample)")
    train_samples = _encodable(train_samples, alphabet, "training", cb)
    val_samples = _encodable(val_samples, alphabet, "validation", cb)
    if not train_samples or not val_samples:
        raise TrainingError(f"no {'training' if not train_samples else 'validation'} sample left that the character "
                            f"set {alphabet.describe()} can write")
    pre = model_cfg.preprocess()
    cb.on_message(f"decoding {len(train_samples) + len(val_samples):,} images into memory")
    train_ds = LineDataset(train_samples, alphabet, pre)
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
    return train_ds, val_ds


# --- one step, one epoch ----------------------------------------------------------------------------------------------

def train_step(model: CRNN, batch, opt, sched, scaler, precision: Precision, cfg: TrainConfig,
               device: torch.device) -> float | None:
    """Forward (under the run's precision), CTC loss, backward, clipped update, schedule step. Returns the loss, or
    None when it was not finite (the batch is skipped and nothing is updated)."""
    images, widths, targets, lengths = batch
    with precision.autocast():
        logits = model(images.to(device, non_blocking=True))
    loss = ctc_loss(logits, targets, getattr(model, "module", model).output_lengths(widths), lengths)  # DDP: .module
    opt.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return None
    value = loss.item()
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(opt)
    scaler.update()
    if cfg.scheduler != "plateau":
        sched.step()
    return value


@dataclass
class EpochResult:
    seen: int = 0
    loss_sum: float = 0.0
    stopped: Stop | None = None

    @property
    def train_loss(self) -> float:
        return self.loss_sum / max(1, self.seen)


def train_epoch(run: _Run, epoch: int, deadline: float, progress: bool) -> EpochResult:
    """One pass over the training batches, seeded by the epoch (an exact resume replays it); stops early on a stop
    request or the time budget. Every ``log_every`` steps a step record goes to the log and the callback."""
    cfg, state = run.cfg, run.state
    run.batches.seed(cfg.seed * 100_003 + epoch)
    torch.manual_seed(cfg.seed * 7919 + epoch + 1_000_003 * run.ranks.rank)  # each rank its own dropout draws
    run.model.train()
    result = EpochResult()
    window_t, window_n = time.monotonic(), 0
    bar = _progress(len(run.batches), f"epoch {epoch}/{state.planned_epochs}", progress)
    try:
        for batch in run.batches:
            loss = train_step(run.net, batch, run.opt, run.sched, run.scaler, run.precision, cfg, run.device)
            if loss is None:
                run.bad_in_a_row += 1
                run.cb.on_message(f"step {state.step}: non-finite loss, batch skipped")
                run.write({"type": "bad_batch", "step": state.step, "loss": "nan"})
                if run.bad_in_a_row >= cfg.max_bad_batches:
                    raise TrainingError(f"{run.bad_in_a_row} batches in a row gave a non-finite loss; "
                                        "lower the learning rate or check the labels")
                continue
            run.bad_in_a_row = 0
            if run.average is not None:
                run.average.update_parameters(run.model)
            state.step += 1
            n = len(batch[1])
            result.seen += n
            result.loss_sum += loss * n
            window_n += n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
            if state.step % cfg.log_every == 0:
                now = time.monotonic()
                m = {"type": "step", "step": state.step, "epoch": epoch, "planned_epochs": state.planned_epochs,
                     "train_loss": loss, "lr": run.opt.param_groups[0]["lr"],
                     "samples_per_s": window_n / max(1e-9, now - window_t)}
                window_t, window_n = now, 0
                run.write(m)
                run.cb.on_step(m)
            if run.ranks.decide(run.cb.should_stop()):  # decided on rank 0, so every rank stops at the same step
                result.stopped = Stop.REQUESTED
                break
            if run.ranks.decide(time.monotonic() > deadline):
                result.stopped = Stop.BUDGET
                break
    finally:
        if bar is not None:
            bar.close()
    return result


@dataclass
class _Run:
    """Everything one training run holds between its steps."""

    cfg: TrainConfig
    alphabet: Alphabet
    model_cfg: CRNNConfig
    device: torch.device
    precision: Precision
    model: CRNN
    opt: torch.optim.Optimizer
    sched: object
    scaler: torch.amp.GradScaler
    batches: object
    val_ds: LineDataset
    state: RunState
    cb: Callback
    write: object
    fingerprint: str = ""
    provenance: dict = field(default_factory=dict)
    training_labels: dict = field(default_factory=dict)
    bad_in_a_row: int = 0
    net: torch.nn.Module | None = None  # what trains: the model, or DDP around it
    ranks: Ranks = SINGLE
    average: torch.nn.Module | None = None  # the weights' moving average (ocr.training.averaging), when cfg.ema

    @property
    def reader(self) -> CRNN:
        """The model validated, saved as the checkpoint's model and read: the average when the run keeps one."""
        return self.model if self.average is None else self.average.module

    def snapshot(self) -> dict:
        """The checkpoint: weights, configs, optimizer/scheduler/scaler state and the run state (an exact resume).
        With averaging, ``model`` is the average and ``trained_model`` the weights that train on."""
        averaging = {} if self.average is None else {"trained_model": self.model.state_dict(),
                                                      "average_updates": int(self.average.n_averaged)}
        return averaging | {
            "version": CHECKPOINT_VERSION, "model": self.reader.state_dict(), "model_config": self.model_cfg.to_dict(),
            "alphabet": self.alphabet.chars, "preprocess": asdict(self.model_cfg.preprocess()),
            "train_config": asdict(self.cfg), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(), "run_state": asdict(self.state), "data_fingerprint": self.fingerprint,
            "metrics": self.state.history[-1] if self.state.history else {}, "provenance": self.provenance,
            "training_labels": self.training_labels,
        }


MAX_TRAINING_LABELS = 50_000


def training_labels(samples: list[Sample]) -> dict[str, int]:
    """The human labels of a run and their counts (pseudo-labels left out; the most frequent ``MAX_TRAINING_LABELS``),
    kept in the checkpoint: the language model of a model whose character set the names LM does not fit."""
    counts = Counter(s.label for s in samples if s.split != "pseudo")
    return dict(counts.most_common(MAX_TRAINING_LABELS))


def _end_epoch(run: _Run, out: Path, epoch: int, result: EpochResult, t0: float, started: float, deadline: float,
               resumed: bool) -> None:
    """Validation, the epoch record, re-planning after the first epoch of a budgeted run, and the checkpoints."""
    cfg, state = run.cfg, run.state
    val = validate(run.reader, run.val_ds, run.alphabet, run.device, max(64, cfg.batch_size), run.ranks)
    if cfg.scheduler == "plateau":
        run.sched.step(val["val_cer"])
    state.epoch = epoch
    loss_sum, seen = run.ranks.sum([result.loss_sum, result.seen])
    m = {"type": "epoch", "epoch": epoch, "planned_epochs": state.planned_epochs, "step": state.step,
         "train_loss": loss_sum / max(1, seen), **val, "lr": run.opt.param_groups[0]["lr"], "seconds": time.monotonic() - t0}
    if run.device.type == "cuda":
        m["gpu_memory_peak_gb"] = round(torch.cuda.max_memory_allocated(run.device) / 2**30, 2)
    state.history.append(m)
    run.write(m)
    run.cb.on_epoch(m)
    is_best = val["val_cer"] < state.best_cer
    if is_best:
        state.best_cer = val["val_cer"]
    if epoch == 1 and not resumed and cfg.max_minutes is not None:
        # re-plan from the measured first epoch, so the schedule ends when the budget does
        per_epoch = time.monotonic() - started
        fits = run.ranks.agree(max(1, int((deadline - started) * 0.98 / per_epoch)))  # rank 0's plan
        if fits != state.planned_epochs:
            run.cb.on_message(f"re-planned: {min(cfg.epochs, fits)} epoch(s) of {per_epoch:.0f} s fit the budget")
            state.planned_epochs = min(cfg.epochs, fits)
    if not run.ranks.main:
        return  # rank 0 alone writes checkpoints
    snap = run.snapshot()
    save_checkpoint(out / "last.pt", snap)
    run.cb.on_checkpoint(out / "last.pt", "last", m)
    if is_best:
        save_checkpoint(out / "best.pt", snap)
        run.cb.on_checkpoint(out / "best.pt", "best", m)


# --- the run ----------------------------------------------------------------------------------------------------------

def fit(
    train_samples: list[Sample],
    val_samples: list[Sample],
    out_dir: str | Path,
    cfg: TrainConfig = TrainConfig(),
    alphabet: Alphabet | None = None,
    init: str | Path | None = None,
    resume: bool = False,
    callback: Callback | None = None,
    progress: bool = True,
    provenance: dict | None = None,
) -> dict:
    """Train and write ``out_dir/{last,best}.pt`` and ``metrics.jsonl``. Returns the final summary. ``provenance``
    (where the training data came from, e.g. pseudo-labels) is stored in every checkpoint. Started by ``torchrun``,
    each process is a rank of one run (``ocr.training.distributed``): rank 0 alone calls ``callback`` and writes."""
    ranks = Ranks.from_env()
    cb = (callback or Callback()) if ranks.main else Callback()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, alphabet, model_cfg, resumed, base, added = _resolve_run(out, cfg, alphabet, init, resume,
                                                                  [s.label for s in train_samples])
    if added:
        cb.on_message(f"added {len(added)} character(s) the start model lacks: {' '.join(repr(c) for c in added)}")
    device = start(ranks, select_device(cfg.device))
    precision = resolve_precision(cfg.precision, device)
    seed_everything(cfg.seed)
    train_ds, val_ds = _datasets(train_samples, val_samples, alphabet, model_cfg, cfg, cb)
    batches = training_batches(train_ds, cfg, device)
    batches.share(ranks.rank, ranks.world)

    model = CRNN(model_cfg).to(device)
    if base is not None:
        model.load_state_dict(base["model"])
    # a rank's batch is cfg.batch_size, so the run's batch is world times larger: AdamW's square-root rule
    opt = torch.optim.AdamW(model.parameters(), lr=scaled_lr(cfg.lr, ranks.world), weight_decay=cfg.weight_decay)
    state = RunState(**resumed["run_state"]) if resumed is not None else RunState(planned_epochs=cfg.epochs,
                                                                                   ranks=ranks.world)
    if resumed is None and cfg.max_minutes is not None:
        state.planned_epochs = ranks.agree(min(cfg.epochs, _plan_epochs(model, batches, val_ds, cfg, device, precision,
                                                                        cb)))
    steps_per_epoch = len(batches)
    sched = _scheduler(opt, cfg, lambda: state.planned_epochs * steps_per_epoch)
    scaler = precision.scaler()
    if resumed is not None:
        model.load_state_dict(resumed.get("trained_model", resumed["model"]))
        opt.load_state_dict(resumed["optimizer"])
        sched.load_state_dict(resumed["scheduler"])
        scaler.load_state_dict(resumed["scaler"])
        _rescale_for_ranks(opt, sched, state, cfg, ranks.world, steps_per_epoch)
        cb.on_message(f"resuming after epoch {state.epoch} (step {state.step}) of {state.planned_epochs}")

    average = averaged(model, cfg.ema)
    if average is not None and resumed is not None and "average_updates" in resumed:
        restore(average, resumed["model"], resumed["average_updates"])
    log = (out / "metrics.jsonl").open("a", encoding="utf-8") if ranks.main else None

    def write(record: dict) -> None:
        if log is not None:  # rank 0 alone
            log.write(json.dumps(record) + "\n")
            log.flush()

    run = _Run(cfg, alphabet, model_cfg, device, precision, model, opt, sched, scaler, batches, val_ds, state, cb,
               write, data_fingerprint(train_ds.samples), provenance or {}, training_labels(train_ds.samples),
               net=wrap(model, ranks, device), ranks=ranks, average=average)
    info = {"device": str(device), "model": model_cfg.describe(), "parameters": sum(p.numel() for p in model.parameters()),
            "train_samples": len(train_ds), "val_samples": len(val_ds), "epochs": state.planned_epochs,
            "steps_per_epoch": steps_per_epoch, "data_fingerprint": run.fingerprint, "precision": precision.name,
            "data_on_device": not isinstance(batches, LoaderBatches), "charset": alphabet.chars,
            "charset_added": added, "ranks": ranks.world, "lr": scaled_lr(cfg.lr, ranks.world)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1)}
    cb.on_start(info)
    write({"type": "start", "time": time.time(), **info, "train_config": asdict(cfg)})
    if cfg.diagnose and ranks.main:
        _diagnose(model, batches, model_cfg, cb, device)

    started = time.monotonic()
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes is not None else math.inf
    stopped = None
    try:
        while state.epoch < state.planned_epochs and stopped is None:
            epoch, t0 = state.epoch + 1, time.monotonic()
            result = train_epoch(run, epoch, deadline, progress)
            stopped = result.stopped
            if stopped is not None and result.seen * ranks.world < len(train_ds) // 2 and (
                    state.epoch > 0 or stopped != Stop.BUDGET):
                break  # a partial epoch is not a finished epoch: keep the last complete one (a budget smaller
                # than one epoch still ends with a model)
            _end_epoch(run, out, epoch, result, t0, started, deadline, resumed is not None)
    except torch.OutOfMemoryError:
        raise TrainingError(out_of_memory_message(device, cfg)) from None
    finally:
        write({"type": "end", "time": time.time(), "epoch": state.epoch, "step": state.step,
               "stopped": stopped, "best_val_cer": state.best_cer if state.best_cer < math.inf else None})
        if log is not None:
            log.close()
    best = min(state.history, key=lambda h: h["val_cer"]) if state.history else {}
    return {**info, "planned_epochs": state.planned_epochs, "epochs": state.epoch, "steps": state.step,
            "stopped": stopped, "best": best, "last": state.history[-1] if state.history else {}}


def out_of_memory_message(device: torch.device, cfg: TrainConfig) -> str:
    """What to lower when the device ran out of memory (the job ends with this; its worker goes on)."""
    smaller = "the small preset" if cfg.preset != "small" else "a smaller batch"
    return (f"{device} ran out of memory with batch size {cfg.batch_size} and the {cfg.preset} preset: lower "
            f"--batch-size (e.g. {max(1, cfg.batch_size // 2)}) or use {smaller}, or free the device of other jobs")


def _plan_epochs(model: CRNN, batches, val_ds, cfg: TrainConfig, device, precision: Precision, cb: Callback) -> int:
    """Epochs that fit in ``cfg.max_minutes``, from the timed speed of a few real training steps on a copy (same data
    path, same precision)."""
    import copy

    probe = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(probe.parameters(), lr=0.0)
    rng_state = torch.get_rng_state()
    batches.seed(cfg.seed * 100_003)
    times, n_seen = [], 0
    for i, (images, widths, targets, lengths) in enumerate(batches):
        t = time.perf_counter()
        with precision.autocast():
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
    epoch_s = per_sample * batches.num_samples * 1.05 + per_sample / 3 * len(val_ds)  # + loading, + validation
    epochs = max(1, int(cfg.max_minutes * 60 * 0.95 / epoch_s))
    cb.on_message(f"planned {epochs} epoch(s) of ~{epoch_s:.0f} s for a {cfg.max_minutes:g}-minute budget")
    return epochs


def _diagnose(model: CRNN, loader, model_cfg: CRNNConfig, cb: Callback, device: torch.device, batches: int = 3) -> None:
    model.eval()
    with torch.no_grad():
        for i, (images, widths, targets, lengths) in enumerate(loader):
            logits = model(images.to(device))
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
