"""Checkpoints as model rows: registered by training jobs, chosen as the default, looked up by id."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from db.engine import session
from db.models import JobStatus, Model
from db.settings import Settings

SHIPPED = "shipped"  # the kind of the model that ships with the project


class RegistryError(ValueError):
    """An unknown model, with a message meant for the user."""


def register_checkpoint(settings: Settings, path: str | Path, kind: str, job_id: int | None = None,
                        epoch: int | None = None, metrics: dict | None = None, name: str | None = None,
                        description: str | None = None) -> int:
    """Insert or update the row of the checkpoint at ``path`` (a job rewrites best.pt/last.pt as it trains)."""
    rel = settings.relative(path)
    settings.push([Path(path)])  # the store has it before the row that names it
    with session(settings, write=True) as s:
        model = s.scalar(select(Model).where(Model.path == rel))
        if model is None:
            model = Model(path=rel, kind=kind, job_id=job_id, name=name or (f"job {job_id} {kind}" if job_id else rel))
            s.add(model)
        model.is_best = kind == "best"
        model.epoch, model.metrics = epoch, metrics
        if description:
            model.description = description
        s.flush()
        return model.id


def get_model(settings: Settings, model_id: int) -> Model:
    with session(settings) as s:
        model = s.get(Model, model_id)
    if model is None:
        raise RegistryError(f"no model with id {model_id}")
    return model


def model_file(settings: Settings, model_id: int) -> Path:
    model = get_model(settings, model_id)
    path = settings.resolve(model.path, fresh=True)  # a job rewrites best.pt as it trains
    if not path.exists():
        raise RegistryError(f"model {model_id}: its checkpoint {path} is missing")
    onnx = f"{model.path}.onnx"  # its ONNX file (ocr.engines), stored by the training job that made it
    if settings.store.stored(onnx):
        settings.pull([onnx], fresh=True)
    return path


def pull_job_checkpoints(settings: Settings, job_id: int) -> None:
    """A job resumed on another machine than the one that ran it: its checkpoints come from the store first."""
    with session(settings) as s:
        paths = list(s.scalars(select(Model.path).where(Model.job_id == job_id)))
    settings.pull(paths, fresh=True)


def list_models(settings: Settings) -> list[Model]:
    with session(settings) as s:
        return list(s.scalars(select(Model).order_by(Model.id.desc())))


def set_default(settings: Settings, model_id: int) -> None:
    get_model(settings, model_id)
    with session(settings, write=True) as s:
        s.execute(update(Model).where(Model.is_default.is_(True)).values(is_default=False))
        s.execute(update(Model).where(Model.id == model_id).values(is_default=True))


def default_model(settings: Settings) -> Model | None:
    """The model chosen as default, else the best checkpoint with the lowest validation CER, else the model that ships
    with the project (``register_shipped_model``): the user's first model takes over."""
    with session(settings) as s:
        chosen = s.scalar(select(Model).where(Model.is_default.is_(True)))
        if chosen is not None:
            return chosen
        best = [m for m in s.scalars(select(Model).where(Model.is_best.is_(True))) if m.metrics]
        shipped = s.scalar(select(Model).where(Model.kind == SHIPPED).order_by(Model.id))
    return min(best, key=lambda m: m.metrics.get("val_cer", 1e9), default=shipped)


def adopt_checkpoint(settings: Settings, checkpoint: str | Path, datasets: list[str], name: str) -> int:
    """Bring a checkpoint trained elsewhere under the data directory as the model of a finished training job on
    ``datasets`` (so it can be evaluated, reviewed and fine-tuned with corrections); returns the model id."""
    import shutil

    from db.models import Job, utcnow
    from ocr.checkpoint import load_checkpoint

    metrics = {k: v for k, v in load_checkpoint(checkpoint).get("metrics", {}).items() if k != "type"}
    with session(settings, write=True) as s:
        job = Job(kind="train", status=JobStatus.SUCCEEDED, progress=1.0, message=f"adopted {Path(checkpoint).name}",
                  params={"datasets": datasets, "config": {}, "adopted_from": str(checkpoint)}, data_read_at=utcnow())
        s.add(job)
        s.flush()
        job_id = job.id
    target = settings.data_dir / "runs" / f"job-{job_id}" / "best.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, target)
    return register_checkpoint(settings, target, "best", job_id=job_id, epoch=metrics.get("epoch"), metrics=metrics,
                               name=name)


def register_shipped_model(settings: Settings, folder: str | Path, name: str = "starter (ships with the project)") -> int | None:
    """On a database without any model, the model folder that ships with the project (``ocr.sharing.STARTER``) is
    copied under the data directory and registered: the default until a training job here makes a model, so Draw,
    Review and evaluation work at once. It has no training job here, so "Retrain with corrections" asks for a
    training job that starts from it."""
    import shutil

    from ocr.checkpoint import load_checkpoint
    from ocr.pretrained import CONFIG, WEIGHTS

    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        return None
    with session(settings) as s:
        if s.scalar(select(Model.id).limit(1)) is not None:
            return None
    target = settings.data_dir / "models" / folder.name
    if not target.exists():
        shutil.copytree(folder, target)
    metrics = {k: v for k, v in load_checkpoint(target).get("metrics", {}).items() if k != "type"}
    model_id = register_checkpoint(settings, target, SHIPPED, metrics=metrics, name=name,
                                   description="the starter model shipped with the project; its card is README.md "
                                               "beside its weights")
    return model_id
