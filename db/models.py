"""The tables. Paths are stored relative to the data directory (``Settings.relative``) so that several machines
sharing a data folder and a PostgreSQL database see the same files."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON}


SOURCES = ("kaggle", "synthetic", "drawn", "upload")
SAMPLE_STATUSES = ("ok", "unreadable", "empty", "excluded", "unlabelled")


class JobStatus(StrEnum):
    """Where a job is; stored as its text in ``Job.status`` (a value read back compares equal to its member)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


WAITING = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED)
RESUMABLE = (JobStatus.INTERRUPTED, JobStatus.CANCELLED, JobStatus.FAILED)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(20))
    root: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    import_summary: Mapped[dict | None] = mapped_column(default=None)

    samples: Mapped[list[Sample]] = relationship(back_populates="dataset", passive_deletes=True)


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("image_hash", name="uq_samples_image_hash"),
        Index("ix_samples_dataset_split_status", "dataset_id", "split", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    shard: Mapped[str | None] = mapped_column(Text, default=None)  # the stored zip that holds it (a storage URL only)
    image_hash: Mapped[str] = mapped_column(String(64))
    split: Mapped[str] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(200))
    original_label: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="ok")
    note: Mapped[str | None] = mapped_column(Text)  # why an import excluded it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="samples")


class LabelEdit(Base):
    """Append-only: an undo is a new edit that points at the edit it reverts."""

    __tablename__ = "label_edits"

    id: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    old_label: Mapped[str | None] = mapped_column(String(200))
    new_label: Mapped[str | None] = mapped_column(String(200))
    old_status: Mapped[str] = mapped_column(String(20))
    new_status: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))  # user | prediction | undo
    user_name: Mapped[str | None] = mapped_column(String(100))
    reverts_id: Mapped[int | None] = mapped_column(ForeignKey("label_edits.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # host:pid:random
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(40))
    # what it runs jobs on: [{"name": "cuda:0", "label": "NVIDIA H100 80GB HBM3", "memory_gb": 79.1}, ...]
    devices: Mapped[list | None] = mapped_column(JSON, default=None)
    free: Mapped[list | None] = mapped_column(JSON, default=None)  # the names of the devices no job of it runs on
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    job_id: Mapped[int | None] = mapped_column(Integer)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED)
    requested_device: Mapped[str] = mapped_column(String(40), default="auto")
    ranks: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # devices it runs on, one DDP rank each
    device: Mapped[str | None] = mapped_column(String(40))
    devices: Mapped[list | None] = mapped_column(JSON, default=None)  # the ones it was given: ["cuda:0", "cuda:1"]
    worker_id: Mapped[str | None] = mapped_column(String(100))
    pid: Mapped[int | None] = mapped_column(Integer)  # the child process
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)  # the latest line of progress, for a status column
    progress_data: Mapped[dict | None] = mapped_column(JSON, default=None)  # the same, as its kind's progress fields
    error: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # the exact training data: count, hash of (sample id, label) pairs, and when it was read
    data_count: Mapped[int | None] = mapped_column(Integer)
    data_hash: Mapped[str | None] = mapped_column(String(64))
    data_read_at: Mapped[datetime | None] = mapped_column(default=None)


class JobMetric(Base):
    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_job_name_step", "job_id", "name", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))  # step | epoch
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    """A checkpoint file. A training job registers its ``best.pt`` and ``last.pt`` and updates them as they change."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # best | last | imported | shipped (db.registry.register_shipped_model)
    is_best: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    epoch: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict | None] = mapped_column(default=None)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("model_id", "sample_id", name="uq_predictions_model_sample"),
        Index("ix_predictions_review", "model_id", "split", "correct", "confidence"),
        Index("ix_predictions_label_error", "model_id", "split", "label_error_score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    split: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(String(200))
    text_length: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)  # P(text | image)
    label: Mapped[str | None] = mapped_column(String(200))  # the label when predicted
    edit_distance: Mapped[int | None] = mapped_column(Integer)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    label_log_prob: Mapped[float | None] = mapped_column(Float)  # log P(label | image)
    # how strongly the model (and the decoder's LM, if any) prefers its reading over the label: Reading.label_error_score
    label_error_score: Mapped[float | None] = mapped_column(Float)
    # what the active-learning queue ranks the unlabelled pool by (ocr.curation.acquire): the beam's best other reading,
    # P(text) - P(runner_up), and the image embedding (float16, unit length)
    runner_up: Mapped[str | None] = mapped_column(String(200))
    margin: Mapped[float | None] = mapped_column(Float)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LabelIssue(Base):
    """A labelled sample scored out of fold by a ``find-label-errors`` job: how much more a model that never saw its
    label believes another reading, with the evidence (``ocr.curation.label_errors``)."""

    __tablename__ = "label_issues"
    __table_args__ = (Index("ix_label_issues_job_score", "job_id", "score"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))  # the folds' start
    label: Mapped[str] = mapped_column(String(200))  # the label that was scored
    reading: Mapped[str] = mapped_column(String(200))  # the out-of-fold model's reading
    confidence: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)  # Reading.label_error_score out of fold; 0: it reads the label
    label_log_prob: Mapped[float] = mapped_column(Float)
    in_sample_reading: Mapped[str | None] = mapped_column(String(200))  # the start model's own reading
    agrees: Mapped[bool] = mapped_column(Boolean)  # both models read the same text, not the label
    hard_to_read: Mapped[bool | None] = mapped_column(Boolean)  # doubted, but no sure reading (listed apart)
    fold: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
