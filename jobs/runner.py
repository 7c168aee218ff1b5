"""``python -m jobs.runner JOB_ID --parent PID``: one job in its own process, started by a worker (or one rank of a job
on several devices, started by ``torchrun``, which the worker started).

A crash, a CUDA error or a kill here cannot take the worker down, and the GPU memory is freed when the process
ends. The process never outlives its worker: on Linux the kernel sends it SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), and everywhere a watcher thread checks the worker every second (a rank's parent is torchrun,
so a rank looks the worker's pid up instead). Rank 0 alone records the job's end.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import threading
import time

from db.models import JobStatus
from db.settings import Settings
from jobs import logs, queue
from jobs.context import remove_secrets, set_progress

PARENT_GONE_EXIT = 75
log = logging.getLogger("jobs.runner")


class Terminated(SystemExit):
    """SIGTERM from the worker."""


def _parent_gone(settings: Settings, job_id: int) -> None:
    # ends within seconds even when the status cannot be written (the worker's next start or another worker's recovery
    # marks the job interrupted then)
    threading.Timer(5.0, os._exit, args=(PARENT_GONE_EXIT,)).start()
    try:
        log.warning("job %s: its worker process died; marking it interrupted", job_id)
        queue.finish(settings, job_id, JobStatus.INTERRUPTED,
                     error=f"interrupted: its worker process died; resume it with `python -m jobs resume {job_id}`")
        remove_secrets(settings, job_id)
    finally:
        os._exit(PARENT_GONE_EXIT)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie has: its parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False


def watch_parent(parent: int, settings: Settings, job_id: int) -> None:
    """Exit (the job marked interrupted) when the worker ``parent`` dies; SIGTERM from it raises ``Terminated``."""
    under_torchrun = "LOCAL_RANK" in os.environ

    def worker_gone() -> bool:
        return _gone(parent) if under_torchrun else os.getppid() != parent

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    def on_term(signum, frame):
        # the kernel's parent-death signal can arrive before this process is re-parented: give it a moment
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            if worker_gone():
                _parent_gone(settings, job_id)
            time.sleep(0.05)
        raise Terminated(128 + signum)  # from the worker (cancel or stop): the worker records the status

    signal.signal(signal.SIGTERM, on_term)
    if worker_gone():
        _parent_gone(settings, job_id)

    def loop():
        while True:
            time.sleep(1.0)
            if worker_gone():
                _parent_gone(settings, job_id)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def run(job_id: int, device: str, settings: Settings) -> int:
    from db.engine import session
    from db.models import Job
    from jobs.context import JobContext
    from jobs.kinds import kind as kind_of
    from jobs.params import ParamsError

    with session(settings) as s:
        job = s.get(Job, job_id)
        if job is None:
            log.error("no job with id %s", job_id)
            return 2
        kind, params = job.kind, dict(job.params)
    rank = int(os.environ.get("RANK", "0"))
    log.info("job %s: %s on %s, pid %s, rank %s, params %s", job_id, kind, device, os.getpid(), rank, params)
    ctx = JobContext(settings, job_id, params, device=device, main=rank == 0)
    try:
        declared = kind_of(kind)
        ctx.progress_type = declared.progress
        result = declared.run(ctx)
    except (ValueError, ParamsError, RuntimeError, OSError) as exc:  # includes TrainingError, CatalogError, ...
        log.exception("job %s failed", job_id)
        queue.finish(settings, job_id, JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")  # the first rank's why
        return 1
    except Terminated:
        log.warning("job %s: terminated by its worker", job_id)
        raise
    except BaseException as exc:  # noqa: BLE001 - a job must end with a status whatever happened
        log.exception("job %s failed", job_id)
        queue.finish(settings, job_id, JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        remove_secrets(settings, job_id)
    _leave_ranks()  # after a failure torchrun ends the other ranks; a barrier then would wait for the dead
    if not ctx.main:
        return 0
    if ctx.cancelled:
        queue.finish(settings, job_id, JobStatus.CANCELLED, error="cancelled by request", result=result)
        log.info("job %s: cancelled", job_id)
    else:
        queue.finish(settings, job_id, JobStatus.SUCCEEDED, result=result)
        set_progress(settings, job_id, 1.0, "done")
        log.info("job %s: succeeded", job_id)
    return 0


def _leave_ranks() -> None:
    """A rank of a job on several devices leaves its process group (every rank waits for the others first)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        from ocr.training.distributed import Ranks, end

        end(Ranks.from_env())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.runner", description=__doc__.splitlines()[0])
    parser.add_argument("job_id", type=int)
    parser.add_argument("--parent", type=int, required=True, help="the worker's pid; this process stops when it dies")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logs.setup(capture_prints=True)
    settings = Settings.from_env()
    watch_parent(args.parent, settings, args.job_id)
    return run(args.job_id, args.device, settings)


if __name__ == "__main__":
    sys.exit(main())
