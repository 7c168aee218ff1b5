"""Database models and sessions (arrive with the database issue)."""
