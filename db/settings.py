"""Where the data and the database live, from the environment (one source of truth for every process)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ImportPathError(ValueError):
    """A server path outside the folders this server may import from."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    import_roots: tuple[Path, ...] = ()  # besides the data directory, folders a server-side import may read

    @classmethod
    def from_env(cls) -> Settings:
        """``HWR_IMPORT_ROOTS`` (folders separated by ``:``) defaults to the folder the process was started in."""
        data_dir = Path(os.environ.get("HWR_DATA_DIR", "data")).absolute()
        url = os.environ.get("HWR_DATABASE_URL") or f"sqlite:///{data_dir / 'hwr.db'}"
        roots = os.environ.get("HWR_IMPORT_ROOTS")
        import_roots = tuple(Path(r).absolute() for r in roots.split(os.pathsep) if r) if roots is not None else (Path.cwd(),)
        return cls(data_dir=data_dir, database_url=url, import_roots=import_roots)

    @property
    def allowed_import_roots(self) -> tuple[Path, ...]:
        return (self.data_dir, *self.import_roots)

    def check_import_path(self, path: str | Path) -> Path:
        """The path with its links resolved, when that is inside an allowed root; else an ``ImportPathError``."""
        real = Path(path).resolve()
        if not any(real.is_relative_to(root.resolve()) for root in self.allowed_import_roots):
            raise ImportPathError(f"{path}: outside the folders this server imports from "
                                  f"({', '.join(str(r) for r in self.allowed_import_roots)}); the operator can add "
                                  "folders with HWR_IMPORT_ROOTS")
        return real

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
