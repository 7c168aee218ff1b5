"""``publish``: a model's Hub folder (safetensors, config, ONNX, model card with a finished evaluation's figures),
uploaded with the worker's Hugging Face token (``HF_TOKEN`` or ``hf auth login``), or only written (dry run)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from db.engine import session
from db.models import Job, JobStatus
from db.registry import get_model, model_file
from db.settings import Settings
from jobs.context import JobContext
from jobs.params import JobKind, ParamsError


@dataclass(frozen=True)
class PublishParams:
    model: int
    repo_id: str  # USER/NAME on the Hugging Face Hub
    private: bool = False
    evaluation_job: int | None = None  # a finished evaluation of this model: the card's figures
    dry_run: bool = False  # write the folder under the job's run folder and upload nothing
    license: str = "mit"

    def check(self) -> None:
        from ocr.pretrained import PretrainedError, check_repo_id

        try:
            check_repo_id(self.repo_id)
        except PretrainedError as exc:
            raise ParamsError(str(exc)) from None


def add_options(k: argparse.ArgumentParser) -> None:
    k.add_argument("--model", type=int, required=True, metavar="MODEL_ID")
    k.add_argument("--repo", required=True, metavar="USER/NAME")
    k.add_argument("--private", action="store_true")
    k.add_argument("--evaluation", type=int, metavar="JOB_ID", help="a finished evaluation job: the card's figures")
    k.add_argument("--dry-run", action="store_true", help="write the folder under the job's run folder only")
    k.add_argument("--license", default="mit")


def from_options(args: argparse.Namespace) -> dict:
    return {"model": args.model, "repo_id": args.repo, "private": args.private, "evaluation_job": args.evaluation,
            "dry_run": args.dry_run, "license": args.license}


def prepare(settings: Settings, p: PublishParams, any_path: bool, secrets: dict[str, str]) -> PublishParams:
    get_model(settings, p.model)
    return p


def _evaluation(ctx: JobContext, p: PublishParams):
    """The card's figures: those of a finished evaluation job of this model."""
    from ocr.sharing.publish import Evaluation

    with session(ctx.settings) as s:
        job = s.get(Job, p.evaluation_job)
    if job is None or job.kind != "evaluate" or job.status != JobStatus.SUCCEEDED or job.params.get("model") != p.model:
        raise ValueError(f"job {p.evaluation_job} is not a finished evaluation of model {p.model}")
    r = job.result or {}
    return Evaluation(exact_match=r["exact_match"], cer=r["cer"], n=r["n"], split=r["split"],
                      dataset=f"dataset {r['dataset']!r} of this project ({r['split']})",
                      decoder=r.get("decoder", "greedy"))


def run(ctx: JobContext) -> dict:
    from ocr.sharing.publish import publish

    p: PublishParams = KIND.parse(ctx.params)
    evaluation = _evaluation(ctx, p) if p.evaluation_job is not None else None
    folder = ctx.run_dir() / "hub"
    ctx.progress(0.1, "writing the model folder", force=True)
    result = publish(model_file(ctx.settings, p.model), p.repo_id, evaluation, private=p.private, license=p.license,
                     dry_run=p.dry_run, out=folder)
    ctx.log(f"publish: {json.dumps(result)}")
    return {**result, "folder": ctx.settings.relative(folder), "model": p.model}


KIND = JobKind("publish", "publish a model to the Hugging Face Hub (the worker's token: HF_TOKEN or hf auth login)",
               PublishParams, run, add_options, from_options, prepare)
