"""Where the data and the database live, from the environment (one source of truth for every process)."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from db.storage import Store, check_url


class ImportPathError(ValueError):
    """A server path outside the folders this server may import from."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    import_roots: tuple[Path, ...] = ()  # besides the data directory, folders a server-side import may read
    storage_url: str | None = None  # where images, checkpoints, reports and logs live; None: the data directory

    @classmethod
    def from_env(cls) -> Settings:
        """``HWR_IMPORT_ROOTS`` (folders separated by ``:``) defaults to the folder the process was started in;
        ``HWR_STORAGE_URL`` (``s3://bucket/prefix``) to none: the data directory holds everything."""
        data_dir = Path(os.environ.get("HWR_DATA_DIR", "data")).absolute()
        url = os.environ.get("HWR_DATABASE_URL") or f"sqlite:///{data_dir / 'hwr.db'}"
        roots = os.environ.get("HWR_IMPORT_ROOTS")
        import_roots = tuple(Path(r).absolute() for r in roots.split(os.pathsep) if r) if roots is not None else (Path.cwd(),)
        storage = os.environ.get("HWR_STORAGE_URL") or None
        return cls(data_dir=data_dir, database_url=url, import_roots=import_roots,
                   storage_url=check_url(storage) if storage else None)

    @property
    def store(self) -> Store:
        """The storage URL with this data directory as its local cache (the data directory itself by default)."""
        return _store(self.storage_url or str(self.data_dir), self.data_dir)

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

    def local(self, path: str | Path) -> Path:
        """A path stored in the database (relative to the data directory, or absolute) -> its place on this machine."""
        path = Path(path)
        return path if path.is_absolute() else self.data_dir / path

    def resolve(self, path: str | Path, fresh: bool = False) -> Path:
        """``local(path)``, first pulled from the store when it has a storage URL (``fresh``: again if the store's
        copy changed, for files a job rewrites such as best.pt)."""
        self.pull([path], fresh)
        return self.local(path)

    def pull(self, paths: Iterable[str | Path], fresh: bool = False) -> None:
        """Bring stored files to this machine in one batch (nothing to do without a storage URL)."""
        self.store.pull([str(p) for p in paths if not Path(p).is_absolute()], fresh)

    def push(self, paths: Iterable[Path]) -> None:
        """Store files (or folders) written under the data directory (nothing to do without a storage URL)."""
        self.store.push([p for p in paths if Path(p).absolute().is_relative_to(self.data_dir)])

    def relative(self, path: str | Path) -> str:
        """A real path -> what the database stores: relative to the data directory when inside it."""
        path = Path(path).absolute()
        return str(path.relative_to(self.data_dir)) if path.is_relative_to(self.data_dir) else str(path)

    @property
    def redacted_url(self) -> str:
        """The database URL without its password, for display."""
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)


@functools.lru_cache(maxsize=8)
def _store(url: str, cache: Path) -> Store:
    return Store(url, cache)
