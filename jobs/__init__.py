"""Background jobs with the database as the queue: ``python -m jobs submit|status|cancel|resume|log|workers`` and
``python -m jobs.worker``. Each job runs in a child process of a worker; the dashboard only reads and writes rows."""
