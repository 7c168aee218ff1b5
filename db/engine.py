"""One engine factory, sessions, and the schema brought up to date on open.

SQLite gets WAL (readers never block the writer), foreign keys and a busy timeout. Write sessions begin with
``BEGIN IMMEDIATE`` there: a transaction that reads and then writes would otherwise fail at once with
"database is locked" when another process wrote in between, whatever the timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def make_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event below emits BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creates a new database, upgrades an old one)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
    # two processes opening a new database at once: the second waits for the first, then finds the schema current
    with engine.execution_options(write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7411)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def get_engine(settings: Settings | None = None) -> Engine:
    """The process's engine for these settings, created and migrated on first use."""
    settings = settings or Settings.from_env()
    with _lock:
        engine = _engines.get(settings.database_url)
        if engine is None:
            url = make_url(settings.database_url)
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = make_engine(settings.database_url)
            migrate(engine)
            _engines[settings.database_url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (a forked child must not share its parent's)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session(settings: Settings | None = None, write: bool = False) -> Iterator[Session]:
    """``with session(write=True) as s: ...`` commits at the end, rolls back on error."""
    engine = get_engine(settings)
    if write:
        engine = engine.execution_options(write=True)
    with Session(engine, expire_on_commit=False) as s, s.begin():
        yield s


def table_names(engine: Engine) -> list[str]:
    return inspect(engine).get_table_names()
