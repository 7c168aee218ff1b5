"""``python -m jobs submit|status|cancel|resume|log|workers|datasets|models|export-labels``.

Settings come from ``HWR_DATA_DIR`` and ``HWR_DATABASE_URL``. ``submit`` prints the new job id as its last line.
Errors exit non-zero with one readable line.
"""

from __future__ import annotations

import argparse
import json
import sys

from db.models import JobStatus
from jobs.kinds import KINDS


def _submit(args, settings) -> int:
    from jobs.queue import job_status, submit

    job_id = submit(settings, args.kind, args.declared.from_options(args), any_path=True)  # the operator's shell
    waiting = job_status(settings, job_id)["waiting"]
    print(f"queued {args.kind} job" + (f" ({waiting})" if waiting else ""))  # e.g. no live worker has 2 free GPUs
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
             "devices": [d["name"] for d in w.devices or []], "free": w.free,
             "heartbeat_at": as_utc(w.heartbeat_at).isoformat()} for w in workers]
    if args.json:
        print(json.dumps(rows))
    else:
        print("\n".join(f"{r['id']}  {r['device']}  {len(r['free'] or [])} of {len(r['devices']) or 1} free  "
                        f"job {r['job'] or '-'}" for r in rows) or "no worker alive")
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
    for declared in KINDS.values():
        k = kinds.add_parser(declared.name, help=declared.help)
        declared.add_options(k)
        k.set_defaults(declared=declared)

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
    from db.storage import StorageError
    from jobs.params import JobError, ParamsError

    try:
        settings = Settings.from_env()
        if args.command == "submit":
            return _submit(args, settings)
        if args.command == "status":
            return _status(args, settings)
        if args.command == "cancel":
            from jobs.queue import request_cancel

            status = request_cancel(settings, args.id)
            print(f"job {args.id}: {'stop requested' if status == JobStatus.RUNNING else status}")
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
    except (JobError, ParamsError, CatalogError, RegistryError, ImportPathError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. the database cannot be reached: one line, not a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
