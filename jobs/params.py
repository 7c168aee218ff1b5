"""What a job kind declares (``JobKind``) and the checks its parameters pass when it is submitted, so a bad job is
refused before anything is written. Each kind's declaration is in ``jobs/kinds/``."""

from __future__ import annotations

import argparse
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from sqlalchemy import select

from db.catalog import dataset_id
from db.engine import session
from db.models import WAITING, Job
from db.settings import Settings
from jobs.context import Count


class ParamsError(ValueError):
    """Invalid job parameters, with a message meant for the user."""


class JobError(ValueError):
    """A request about a job that cannot be done, with a message meant for the user."""


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


def build(cls, values: dict, what: str):
    """``cls(**values)`` when every value has its field's type and nothing is missing or unknown; else a
    ``ParamsError`` naming the parameter."""
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


def require(ok: bool, message: str) -> None:
    """A range rule of a kind's parameters (its ``check``)."""
    if not ok:
        raise ParamsError(message)


def dataset_exists_or_coming(settings: Settings, name: str) -> None:
    """A job may name a dataset that an import or synth job queued before it will create."""
    try:
        dataset_id(settings, name)
    except ValueError:
        with session(settings) as s:
            pending = s.scalars(select(Job.params).where(Job.kind.in_(("import", "synth")),
                                                         Job.status.in_(WAITING))).all()
        if not any(p.get("name") == name for p in pending):
            raise


DEVICE_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(name: str) -> str:
    if not DEVICE_NAME.match(name or ""):
        raise JobError(f"unknown device {name!r}; choose from auto, cpu, mps, cuda, cuda:N")
    return name


def _as_is(settings: Settings, p: Any, any_path: bool, secrets: dict[str, str]) -> Any:
    return p


@dataclass(frozen=True)
class JobKind:
    """A kind of job, declared once: its parameters (a frozen dataclass whose ``check`` states their ranges), its
    ``jobs submit`` options, its task, the checks against the database before it is queued, the device it asks
    for (and how many at once) and its progress fields. ``python -m jobs``, ``jobs.queue.submit`` and the worker
    read it; nothing else names a kind's parameters."""

    name: str
    help: str
    params: type
    run: Callable  # JobContext -> a JSON-safe result
    add_options: Callable[[argparse.ArgumentParser], None]
    from_options: Callable[[argparse.Namespace], dict]
    prepare: Callable[[Settings, Any, bool, dict[str, str]], Any] = _as_is  # -> params to store
    device: Callable[[Any], str] = lambda p: "auto"
    ranks: Callable[[Any], int] = lambda p: 1  # the devices it runs on at once, one DDP rank each
    progress: type = Count  # the frozen dataclass of its progress fields (``JobContext.progress(data=...)``)

    def parse(self, values: dict):
        """Validated parameters (a ``ParamsError`` says what is wrong)."""
        p = build(self.params, values, f"{self.name} job")
        try:
            p.check()
        except ParamsError as exc:
            raise ParamsError(f"{self.name} job: {exc}") from None
        return p


def default(params: type, name: str):
    """A parameter's declared default: what a page's form starts from."""
    return next(f.default for f in fields(params) if f.name == name)


def to_dict(p) -> dict:
    return asdict(p)
