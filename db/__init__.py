"""The database: datasets, samples and their label history, jobs, metrics, models and predictions.

SQLAlchemy 2.0 ORM; SQLite in the data directory by default, any SQLAlchemy URL through ``HWR_DATABASE_URL``.
Every entry point calls ``db.engine.open_database`` which brings the schema to the current Alembic revision.
"""
