"""Every job kind, each declared once in its own module (``jobs.params.JobKind``): ``python -m jobs submit``, the
queue's ``submit`` and the worker read them from ``KINDS``."""

from __future__ import annotations

from jobs.kinds import import_data, label_errors, publish, reading, synth, train
from jobs.params import JobKind, ParamsError

KINDS: dict[str, JobKind] = {k.name: k for k in (import_data.KIND, synth.KIND, train.KIND, reading.EVALUATE,
                                                  reading.PREDICT, label_errors.KIND, publish.KIND)}


def kind(name: str) -> JobKind:
    """The declaration of job kind ``name`` (a ``ParamsError`` naming the kinds for another)."""
    if name not in KINDS:
        raise ParamsError(f"unknown job kind {name!r}; choose from {', '.join(KINDS)}")
    return KINDS[name]

