"""Job parameters: one dataclass per kind, checked when the job is submitted so a bad job is refused before
anything is written. Training options are ``ocr.train.TrainConfig`` fields (one source of truth)."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from ocr.alphabet import CHARSET_CHOICES, NAMED_CHARSETS
from ocr.config import PRECISIONS, SCHEDULERS, TrainConfig
from ocr.datasets import SPLITS
from ocr.model import PRESETS
from ocr.synth import KINDS as SYNTH_KINDS


class ParamsError(ValueError):
    """Invalid job parameters, with a message meant for the user."""


@dataclass(frozen=True)
class ImportParams:
    path: str  # a folder or zip; with kaggle_dataset, the folder to download into
    name: str
    source: str = "kaggle"
    kaggle_dataset: str | None = None  # e.g. landlord/handwriting-recognition: download it with the Kaggle API first
    credentials: bool = False  # a kaggle.json handed in at submit: it lives in DATA_DIR/secrets/<job id>/ until the job ends
    # how labels are read (ocr.alphabet.LabelRules; the defaults are the Kaggle names forms')
    upper: bool = True
    strip_accents: bool = False
    charset: str = "names"  # names | digits | latin | any: labels with other characters are kept apart, excluded


@dataclass(frozen=True)
class SynthParams:
    n: int
    name: str
    seed: int = 0
    validation: int = -1  # validation images beside the training ones; -1: 5 % of n
    kind: str = "names"  # ocr.synth.KINDS


@dataclass(frozen=True)
class TrainParams:
    datasets: list[str]
    splits: list[str] | None = None  # None: every split except test
    val_datasets: list[str] = field(default_factory=list)  # empty: a seeded holdout of the training data
    val_splits: list[str] | None = None
    init_model: int | None = None  # fine-tune from this model id
    resume: bool = False
    config: dict = field(default_factory=dict)  # TrainConfig fields to override
    unlabelled_datasets: list[str] = field(default_factory=list)  # the pool self-training reads (config.self_train)
    teacher_model: int | None = None  # this model reads the pool (a loop's current model); None: a teacher trained first


@dataclass(frozen=True)
class EvaluateParams:
    model: int
    dataset: str
    split: str = "validation"
    beam: int = 0  # 0: greedy
    report: bool = True
    lm: bool = False  # beam search (20 at least) with the character language model of names (ocr.charlm)


@dataclass(frozen=True)
class PredictParams:
    model: int
    dataset: str
    split: str | None = None  # None: the samples without a label
    beam: int = 0
    lm: bool = False


@dataclass(frozen=True)
class FindLabelErrorsParams:
    model: int  # each fold is fine-tuned from this model
    datasets: list[str]
    splits: list[str] | None = None  # None: every split except test
    folds: int = 4
    max_minutes: float = 8.0  # the folds' fine-tuning, all together
    lm: bool = False  # read with the names language model (the score is the model's own)


@dataclass(frozen=True)
class PublishParams:
    model: int
    repo_id: str  # USER/NAME on the Hugging Face Hub
    private: bool = False
    evaluation_job: int | None = None  # a finished evaluation of this model: the card's figures
    dry_run: bool = False  # write the folder under the job's run folder and upload nothing
    license: str = "mit"


PARAMS = {"import": ImportParams, "synth": SynthParams, "train": TrainParams, "evaluate": EvaluateParams,
          "predict": PredictParams, "find-label-errors": FindLabelErrorsParams, "publish": PublishParams}


def _type_ok(value, annotation) -> bool:
    hint = eval(annotation, vars(typing) | vars(types)) if isinstance(annotation, str) else annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def _build(cls, values: dict, what: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParamsError(f"{what}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for name, f in known.items():
        if name not in values:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ParamsError(f"{what}: missing parameter {name!r}")
            continue
        if not _type_ok(values[name], f.type):
            finite = " finite" if "float" in str(f.type) and isinstance(values[name], float) else ""
            raise ParamsError(f"{what}: {name}={values[name]!r} is not a valid{finite} {f.type}")
    return cls(**values)


def parse(kind: str, values: dict):
    """Validated parameters of a job of ``kind`` (a ``ParamsError`` says what is wrong)."""
    if kind not in PARAMS:
        raise ParamsError(f"unknown job kind {kind!r}; choose from {', '.join(PARAMS)}")
    p = _build(PARAMS[kind], values, f"{kind} job")
    if kind == "synth" and p.kind not in SYNTH_KINDS:
        raise ParamsError(f"synth job: unknown kind {p.kind!r}; choose from {', '.join(SYNTH_KINDS)}")
    if kind == "synth" and not 1 <= p.n <= 2_000_000:
        raise ParamsError(f"synth job: n={p.n} must be between 1 and 2,000,000")
    if kind == "import" and p.charset not in ("any", *NAMED_CHARSETS):
        raise ParamsError(f"import job: unknown character set {p.charset!r}; choose from any, {', '.join(NAMED_CHARSETS)}")
    if kind == "publish":
        from ocr.pretrained import PretrainedError, check_repo_id

        try:
            check_repo_id(p.repo_id)
        except PretrainedError as exc:
            raise ParamsError(f"publish job: {exc}") from None
    if kind in ("import", "synth") and not p.name.strip():
        raise ParamsError(f"{kind} job: the dataset needs a name")
    if kind == "train":
        if not p.datasets:
            raise ParamsError("train job: give at least one dataset")
        for splits in (p.splits, p.val_splits):
            bad = [s for s in splits or [] if s not in SPLITS]
            if bad:
                raise ParamsError(f"train job: unknown split(s) {', '.join(bad)}; choose from {', '.join(SPLITS)}")
        cfg = train_config(p)
        if cfg.preset not in PRESETS:
            raise ParamsError(f"train job: unknown preset {cfg.preset!r}; choose from {', '.join(PRESETS)}")
        if cfg.precision not in ("auto", *PRECISIONS):
            raise ParamsError(f"train job: unknown precision {cfg.precision!r}; choose from auto, {', '.join(PRECISIONS)}")
        if cfg.scheduler not in SCHEDULERS:
            raise ParamsError(f"train job: unknown scheduler {cfg.scheduler!r}; choose from {', '.join(SCHEDULERS)}")
        if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0 or (cfg.max_minutes is not None and cfg.max_minutes <= 0):
            raise ParamsError("train job: epochs, batch_size, lr and max_minutes must be positive")
        if not 0 < cfg.val_fraction < 1:
            raise ParamsError("train job: val_fraction must be between 0 and 1")
        if not 0 <= cfg.self_train < 1:
            raise ParamsError(f"train job: self_train={cfg.self_train} must be a share of the run in [0, 1)")
        if not 0 < cfg.pseudo_threshold <= 1:
            raise ParamsError(f"train job: pseudo_threshold={cfg.pseudo_threshold} must be in (0, 1]")
        if cfg.charset not in CHARSET_CHOICES and not Path(cfg.charset).is_file():
            raise ParamsError(f"train job: unknown character set {cfg.charset!r}; choose from "
                              f"{', '.join(CHARSET_CHOICES)} or give a file on the server that lists the characters")
        if p.teacher_model is not None and cfg.self_train == 0:
            raise ParamsError("train job: teacher_model reads the unlabelled images for self-training; set "
                              "config.self_train and unlabelled_datasets too")
        if cfg.self_train > 0 and not p.unlabelled_datasets:
            raise ParamsError("train job: self-training needs unlabelled_datasets, the datasets whose samples "
                              "without a label it reads")
    if kind == "find-label-errors":
        if not p.datasets:
            raise ParamsError("find-label-errors job: give at least one dataset")
        if p.folds < 2:
            raise ParamsError(f"find-label-errors job: folds={p.folds} must be at least 2")
        if not p.max_minutes > 0:
            raise ParamsError(f"find-label-errors job: max_minutes={p.max_minutes} must be above 0")
    if kind in ("evaluate", "predict") and not 0 <= p.beam <= 100:
        raise ParamsError(f"{kind} job: beam={p.beam} must be between 0 (greedy) and 100")
    if kind == "evaluate" and p.split not in SPLITS:
        raise ParamsError(f"evaluate job: unknown split {p.split!r}; choose from {', '.join(SPLITS)}")
    return p


def train_config(p: TrainParams) -> TrainConfig:
    return _build(TrainConfig, p.config, "train job config")


def to_dict(p) -> dict:
    return asdict(p)
