"""Background jobs, with the database as the queue (arrive with the jobs issue)."""
