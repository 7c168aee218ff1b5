"""Where the data and the database live, from the environment (one source of truth for every process)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("HWR_DATA_DIR", "data")).absolute()
        url = os.environ.get("HWR_DATABASE_URL") or f"sqlite:///{data_dir / 'hwr.db'}"
        return cls(data_dir=data_dir, database_url=url)

    def resolve(self, path: str | Path) -> Path:
        """A path stored in the database (relative to the data directory, or absolute) -> a real path."""
        path = Path(path)
        return path if path.is_absolute() else self.data_dir / path

    def relative(self, path: str | Path) -> str:
        """A real path -> what the database stores: relative to the data directory when inside it."""
        path = Path(path).absolute()
        return str(path.relative_to(self.data_dir)) if path.is_relative_to(self.data_dir) else str(path)

    @property
    def redacted_url(self) -> str:
        """The database URL without its password, for display."""
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)
