"""Alembic environment: runs on the connection ``db.engine.migrate`` hands over (or on ``HWR_DATABASE_URL``
when called from the ``alembic`` command line to write a new revision)."""

from alembic import context
from sqlalchemy import create_engine

from db.models import Base
from db.settings import Settings

config = context.config
target_metadata = Base.metadata


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    with create_engine(Settings.from_env().database_url).begin() as conn:
        run(conn)
