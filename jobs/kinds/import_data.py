"""``import``: a Kaggle-layout folder or zip (downloaded with the Kaggle API first, if asked), or a folder of
unlabelled images, into the catalogue."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from db import catalog
from db.models import SOURCES
from db.settings import Settings
from jobs.context import Count, JobContext, remove_secrets, secrets_dir
from jobs.params import JobError, JobKind, require
from ocr.alphabet import NAMED_CHARSETS, LabelRules
from ocr.training.config import add_label_options, label_rules


@dataclass(frozen=True)
class ImportParams:
    path: str  # a folder or zip; with kaggle_dataset, the folder to download into
    name: str
    source: str = "kaggle"
    kaggle_dataset: str | None = None  # e.g. landlord/handwriting-recognition: download it with the Kaggle API first
    credentials: bool = False  # a kaggle.json handed in at submit: it lives in DATA_DIR/secrets/<job id>/ until the job ends
    # how labels are read (ocr.alphabet.LabelRules); all None: the data's own label_rules.json, else the Kaggle
    # names forms' defaults
    upper: bool | None = None
    strip_accents: bool | None = None
    charset: str | None = None  # names | digits | latin | any: labels with other characters are kept apart, excluded

    def check(self) -> None:
        require(self.charset in (None, "any", *NAMED_CHARSETS),
                f"unknown character set {self.charset!r}; choose from any, {', '.join(NAMED_CHARSETS)}")
        require(bool(self.name.strip()), "the dataset needs a name")

    @property
    def rules(self) -> LabelRules | None:
        return LabelRules.given(self.upper, self.strip_accents, self.charset)


def add_options(k: argparse.ArgumentParser) -> None:
    k.add_argument("--path", required=True)
    k.add_argument("--name", required=True, help="dataset name")
    k.add_argument("--source", default="kaggle", choices=SOURCES)
    k.add_argument("--kaggle", nargs="?", const="landlord/handwriting-recognition", metavar="OWNER/DATASET",
                   help="download it with the Kaggle API into --path first (credentials from the environment)")
    add_label_options(k)


def from_options(args: argparse.Namespace) -> dict:
    rules = label_rules(args)
    values = {"path": args.path, "name": args.name, "source": args.source}
    if rules is not None:
        values |= {"upper": rules.upper, "strip_accents": rules.strip_accents, "charset": rules.charset}
    return values | ({"kaggle_dataset": args.kaggle} if args.kaggle else {})


def prepare(settings: Settings, p: ImportParams, any_path: bool, secrets: dict[str, str]) -> ImportParams:
    """Secrets mark the import as carrying credentials; the path must be readable here (under the allowed roots
    unless ``any_path``: the operator's shell), and is stored absolute (the worker may run elsewhere)."""
    p = replace(p, credentials=p.credentials or bool(secrets))
    if p.credentials and "kaggle.json" not in secrets:
        raise JobError("import job: credentials=True needs the kaggle.json text handed to submit (secrets)")
    if not any_path:  # first: the answer must not tell whether a path outside the roots exists
        settings.check_import_path(p.path)
    if not p.kaggle_dataset and not Path(p.path).exists():
        raise JobError(f"import job: {p.path}: no such file or folder")
    return replace(p, path=os.path.normpath(Path(p.path).absolute()))


def _download(ctx: JobContext, p: ImportParams) -> str:
    from ocr.data.kaggle import download

    ctx.progress(0.0, f"downloading {p.kaggle_dataset} from Kaggle", force=True)
    try:
        if p.credentials:
            folder = secrets_dir(ctx.settings, ctx.job_id)
            if not (folder / "kaggle.json").is_file():
                raise ValueError("the Kaggle credentials given with this job are gone (they are deleted when a job "
                                 "ends); submit the import again with them")
            os.environ["KAGGLE_CONFIG_DIR"] = str(folder)
        return str(download(p.path, p.kaggle_dataset))
    finally:
        if p.credentials:
            remove_secrets(ctx.settings, ctx.job_id)


def run(ctx: JobContext) -> dict:
    p: ImportParams = KIND.parse(ctx.params)

    def progress(done: int, total: int) -> None:
        ctx.progress(done / max(1, total), f"imported {done:,} of {total:,} rows", Count(done, total, "row"))

    path = _download(ctx, p) if p.kaggle_dataset else p.path
    result = catalog.import_dataset(ctx.settings, path, p.name, p.source, p.rules, progress=progress,
                                    should_stop=ctx.should_stop)
    ctx.log(json.dumps({k: v for k, v in result.items() if k != "import"}))
    return result


KIND = JobKind("import", "import a Kaggle-layout folder/zip or a folder of unlabelled images", ImportParams, run,
               add_options, from_options, prepare)
