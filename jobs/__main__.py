"""``python -m jobs submit|status|cancel|resume|log|workers|datasets|models|export-labels``.

Settings come from ``HWR_DATA_DIR`` and ``HWR_DATABASE_URL``. ``submit`` prints the new job id as its last line.
Errors exit non-zero with one readable line.
"""

from __future__ import annotations

import argparse
import json
import sys

from ocr.config import add_label_options, add_training_options, label_rules, positive_float, training_options
from ocr.synth import KINDS


def _submit(args, settings) -> int:
    from jobs.queue import submit

    if args.kind == "import":
        rules = label_rules(args)
        values = {"path": args.path, "name": args.name, "source": args.source, "upper": rules.upper,
                  "strip_accents": rules.strip_accents, "charset": rules.charset}
        if args.kaggle:
            values["kaggle_dataset"] = args.kaggle
    elif args.kind == "synth":
        values = {"n": args.n, "name": args.name, "seed": args.seed, "validation": args.validation, "kind": args.kind}
    elif args.kind == "train":
        config = {**training_options(args), "device": args.device}
        values = {"datasets": args.dataset, "splits": args.split, "val_datasets": args.val_dataset,
                  "val_splits": args.val_split, "init_model": args.init, "config": config,
                  "unlabelled_datasets": args.unlabelled, "teacher_model": args.teacher}
    elif args.kind == "find-label-errors":
        values = {"model": args.model, "datasets": args.dataset, "splits": args.split, "folds": args.folds,
                  "max_minutes": args.max_minutes, "lm": args.lm}
    elif args.kind == "publish":
        values = {"model": args.model, "repo_id": args.repo, "private": args.private,
                  "evaluation_job": args.evaluation, "dry_run": args.dry_run, "license": args.license}
    elif args.kind == "evaluate":
        values = {"model": args.model, "dataset": args.dataset, "split": args.split, "beam": args.beam,
                  "report": not args.no_report, "lm": args.lm}
    else:
        values = {"model": args.model, "dataset": args.dataset, "split": args.split, "beam": args.beam, "lm": args.lm}
    job_id = submit(settings, args.kind, values, any_path=True)  # the operator's shell: no import-root limit
    print(f"queued {args.kind} job")
    print(job_id)
    return 0


def _status(args, settings) -> int:
    from jobs.queue import job_status, list_jobs

    if args.id is not None:
        st = job_status(settings, args.id)
        if args.json:
            print(json.dumps(st, default=str))
        else:
            print(f"job {st['id']} {st['kind']}: {st['status']} {st['progress']:.0%}  {st['waiting'] or st['message'] or ''}")
            for k, v in st["metrics"].items():
                print(f"  {k}: {v:.4g}")
            for c in st["checkpoints"]:
                print(f"  model {c['model_id']} ({c['kind']}, epoch {c['epoch']}): {c['path']}")
            if st["error"]:
                print(f"  error: {st['error']}")
        return 0
    jobs = list_jobs(settings, limit=args.limit)
    if args.json:
        print(json.dumps(jobs, default=str))
    else:
        for j in jobs:
            print(f"{j['id']:>5}  {j['kind']:<9} {j['status']:<11} {j['progress']:>4.0%}  "
                  f"{j['waiting'] or j['message'] or j['error'] or ''}")
    return 0


def _workers(args, settings) -> int:
    from jobs.queue import alive_workers, as_utc

    workers = alive_workers(settings)
    rows = [{"id": w.id, "host": w.host, "pid": w.pid, "device": w.device, "job": w.job_id,
             "heartbeat_at": as_utc(w.heartbeat_at).isoformat()} for w in workers]
    if args.json:
        print(json.dumps(rows))
    else:
        print("\n".join(f"{r['id']}  {r['device']}  job {r['job'] or '-'}" for r in rows) or "no worker alive")
    return 0


def _datasets(args, settings) -> int:
    from db.catalog import dataset_counts

    rows = dataset_counts(settings)
    if args.json:
        print(json.dumps(rows, default=str))
    else:
        for r in rows:
            print(f"{r['id']:>3}  {r['name']:<24} {r['source']:<10} usable {r['usable']:,}  {r['status']}  "
                  f"corrected {r['corrected']:,}")
    return 0


def _models(args, settings) -> int:
    from db.registry import list_models

    rows = [{"id": m.id, "name": m.name, "kind": m.kind, "epoch": m.epoch, "path": m.path, "default": m.is_default,
             "val_cer": (m.metrics or {}).get("val_cer"), "val_exact_match": (m.metrics or {}).get("val_exact_match")}
            for m in list_models(settings)]
    print(json.dumps(rows) if args.json else "\n".join(
        f"{r['id']:>3}  {r['name']:<20} epoch {r['epoch']}  val CER {r['val_cer']}  {r['path']}" for r in rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", help="queue a job; prints its id last")
    kinds = submit.add_subparsers(dest="kind", required=True)
    k = kinds.add_parser("import", help="import a Kaggle-layout folder/zip or a folder of unlabelled images")
    k.add_argument("--path", required=True)
    k.add_argument("--name", required=True, help="dataset name")
    k.add_argument("--source", default="kaggle", choices=["kaggle", "synthetic", "drawn", "upload"])
    k.add_argument("--kaggle", nargs="?", const="landlord/handwriting-recognition", metavar="OWNER/DATASET",
                   help="download it with the Kaggle API into --path first (credentials from the environment)")
    add_label_options(k)
    k = kinds.add_parser("synth", help="generate synthetic handwritten names and import them")
    k.add_argument("--n", type=int, required=True)
    k.add_argument("--name", required=True)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--validation", type=int, default=-1, help="validation images (default 5 %% of N)")
    k.add_argument("--kind", default="names", choices=KINDS, help="names, capitals, dates, numbers, words or mixed")
    k = kinds.add_parser("train", help="train (or fine-tune with --init) on the current labels of datasets")
    k.add_argument("--dataset", action="append", required=True, metavar="NAME")
    k.add_argument("--split", action="append", help="splits to train on (default: all but test)")
    k.add_argument("--val-dataset", action="append", default=[], metavar="NAME",
                   help="validate on this dataset's validation split (default: a seeded 5 %% holdout)")
    k.add_argument("--val-split", action="append")
    add_training_options(k)
    k.add_argument("--device", default="auto", help="auto (the worker's device), cpu, cuda, cuda:N")
    k.add_argument("--init", type=int, metavar="MODEL_ID", help="fine-tune from this model")
    k.add_argument("--unlabelled", action="append", default=[], metavar="NAME",
                   help="self-training reads the samples without a label of this dataset (with --self-train)")
    k.add_argument("--teacher", type=int, metavar="MODEL_ID",
                   help="with --self-train: this model reads the unlabelled samples instead of a teacher trained "
                        "first (the model you retrain, say); the whole run trains on labels + its pseudo-labels")
    k = kinds.add_parser("find-label-errors", help="score every label out of fold: the likeliest wrong labels first "
                                                   "(Review: suspected label errors)")
    k.add_argument("--model", type=int, required=True, metavar="MODEL_ID", help="each fold is fine-tuned from it")
    k.add_argument("--dataset", action="append", required=True, metavar="NAME")
    k.add_argument("--split", action="append", help="splits to score (default: all but test)")
    k.add_argument("--folds", type=int, default=4)
    k.add_argument("--max-minutes", type=positive_float, default=8.0, help="fine-tuning budget of all the folds")
    k.add_argument("--lm", action="store_true", help="read with the names language model")
    k = kinds.add_parser("publish", help="publish a model to the Hugging Face Hub (the worker's token: HF_TOKEN or "
                                         "hf auth login)")
    k.add_argument("--model", type=int, required=True, metavar="MODEL_ID")
    k.add_argument("--repo", required=True, metavar="USER/NAME")
    k.add_argument("--private", action="store_true")
    k.add_argument("--evaluation", type=int, metavar="JOB_ID", help="a finished evaluation job: the card's figures")
    k.add_argument("--dry-run", action="store_true", help="write the folder under the job's run folder only")
    k.add_argument("--license", default="mit")
    for name, help_ in (("evaluate", "read a split with a model and store one prediction per sample"),
                        ("predict", "read the unlabelled samples of a dataset (or a split) with a model")):
        k = kinds.add_parser(name, help=help_)
        k.add_argument("--model", type=int, required=True, metavar="MODEL_ID")
        k.add_argument("--dataset", required=True, metavar="NAME")
        k.add_argument("--split", default="validation" if name == "evaluate" else None)
        k.add_argument("--beam", type=int, default=0, help="beam width (0: greedy; 20 at least with --lm)")
        k.add_argument("--lm", action="store_true",
                       help="beam search with the character language model of names (open vocabulary)")
        if name == "evaluate":
            k.add_argument("--no-report", action="store_true", help="skip report.md/report.pdf")

    s = sub.add_parser("status", help="one job (--json: id, kind, status, progress, metrics, checkpoints, error) or the list")
    s.add_argument("id", type=int, nargs="?")
    s.add_argument("--json", action="store_true")
    s.add_argument("--limit", type=int, default=30)
    for name in ("cancel", "resume"):
        s = sub.add_parser(name, help=f"{name} a job")
        s.add_argument("id", type=int)
    s = sub.add_parser("log", help="the tail of a job's log")
    s.add_argument("id", type=int)
    s.add_argument("--lines", type=int, default=50, help="0: the whole log (last 256 KB)")
    for name in ("workers", "datasets", "models"):
        s = sub.add_parser(name, help=f"list {name}")
        s.add_argument("--json", action="store_true")
    s = sub.add_parser("export-labels", help="write a dataset's current labels as Kaggle CSVs")
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True)

    args = parser.parse_args(argv)
    from db.catalog import CatalogError
    from db.registry import RegistryError
    from db.settings import ImportPathError, Settings
    from jobs.params import ParamsError
    from jobs.queue import JobError

    settings = Settings.from_env()
    try:
        if args.command == "submit":
            return _submit(args, settings)
        if args.command == "status":
            return _status(args, settings)
        if args.command == "cancel":
            from jobs.queue import request_cancel

            status = request_cancel(settings, args.id)
            print(f"job {args.id}: {'stop requested' if status == 'running' else status}")
            return 0
        if args.command == "resume":
            from jobs.queue import resume

            print(f"job {resume(settings, args.id)} queued again")
            return 0
        if args.command == "log":
            from jobs.queue import log_tail

            print(log_tail(settings, args.id, args.lines))
            return 0
        if args.command == "workers":
            return _workers(args, settings)
        if args.command == "datasets":
            return _datasets(args, settings)
        if args.command == "models":
            return _models(args, settings)
        if args.command == "export-labels":
            from db.catalog import export_kaggle

            for path in export_kaggle(settings, args.dataset, args.out):
                print(path)
            return 0
    except (JobError, ParamsError, CatalogError, RegistryError, ImportPathError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. the database cannot be reached: one line, not a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
