"""Where images, checkpoints, reports and logs live: the data directory (the default, nothing to configure) or a
storage URL through fsspec (``s3://bucket/prefix`` with s3fs, any S3-compatible server), so workers on several
machines need one database and one bucket, not a shared folder.

A stored file has a key: its path relative to the data directory, the same text the database holds. With a storage
URL the data directory is the machine's local cache of the store: a worker pulls what a job reads into it and pushes
what the job writes (checkpoints, reports, logs). An image imported twice is stored once: import skips an image whose
SHA-256 the database already has."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMES = ("file", "s3")  # local folders, and any S3-compatible server (s3fs)
ENDPOINT_ENV = "HWR_S3_ENDPOINT"  # an S3-compatible server that is not AWS (MinIO, Ceph, moto): its http(s) URL


class StorageError(OSError):
    """The store cannot be reached, read or written; the message names the store and what failed, for the user."""


def check_url(url: str) -> str:
    """A storage URL this project can use, or a ``StorageError`` naming the schemes it knows."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme not in SCHEMES:
        raise StorageError(f"storage {url}: unknown scheme {scheme!r}; use a folder, file://... or s3://bucket/prefix")
    if scheme == "s3" and not url.removeprefix("s3://").strip("/"):
        raise StorageError(f"storage {url}: name the bucket, as in s3://bucket/prefix")
    return url.rstrip("/")


def _why(exc: BaseException) -> str:
    """One line for the user from what s3fs/botocore raised (their messages carry the server's error code)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "InvalidAccessKeyId" in text \
            or "SignatureDoesNotMatch" in text or "Forbidden" in text:
        return "access denied: check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return "no such bucket"
    if isinstance(exc, OSError) and exc.errno == 28:
        return "no space left on the local cache disk"
    return text


@dataclass(frozen=True)
class Store:
    """A storage URL and the local folder that caches it (the data directory)."""

    url: str
    cache: Path

    @property
    def remote(self) -> bool:
        return not (self.url.startswith("file://") or "://" not in self.url)

    @functools.cached_property
    def _opened(self) -> tuple:
        """(the fsspec file system, the root path in it)."""
        import fsspec

        options = {}
        if self.url.startswith("s3://") and os.environ.get(ENDPOINT_ENV):
            options["endpoint_url"] = os.environ[ENDPOINT_ENV]
        try:
            fs, root = fsspec.core.url_to_fs(self.url, **options)
        except ImportError as exc:
            raise StorageError(f"storage {self.url}: {exc}") from None
        return fs, root.rstrip("/")

    @property
    def fs(self):
        return self._opened[0]

    def remote_path(self, key: str) -> str:
        return f"{self._opened[1]}/{key}"

    def check(self) -> None:
        """Reach the store once: a missing bucket or wrong credentials is one line naming which, before any job."""
        if not self.remote:
            return
        bucket = self.url.removeprefix("s3://").split("/", 1)[0]
        try:
            self.fs.ls(bucket, refresh=True)
        except FileNotFoundError:
            raise StorageError(f"storage {self.url}: no bucket named {bucket!r}") from None
        except Exception as exc:  # noqa: BLE001 - botocore/aiohttp raise many kinds; each becomes one line
            raise StorageError(f"storage {self.url}: {_why(exc)}") from None

    def key(self, path: Path) -> str:
        return path.absolute().relative_to(self.cache).as_posix()

    def pull(self, keys: Iterable[str], fresh: bool = False) -> None:
        """Bring these keys into the local cache (those already there stay, unless ``fresh``: files a job rewrites,
        such as best.pt, are fetched again when the store's copy differs in size or is newer)."""
        if not self.remote:
            return
        wanted = [k for k in dict.fromkeys(keys) if fresh or not (self.cache / k).exists()]
        if fresh:
            wanted = [k for k in wanted if self._stale(k)]
        fetched = self._get_many(wanted) if len(wanted) > 1 else set()
        for key in wanted:
            if key not in fetched:
                self._get(key)  # one at a time: one file, a folder (a report), or the key the store lacks, named

    def _get_many(self, keys: list[str]) -> set[str]:
        """Concurrent downloads (s3fs batches them) into a scratch folder, then each renamed into place: a process
        killed in the middle leaves no half-written file under its final name."""
        scratch = Path(tempfile.mkdtemp(dir=self.cache, prefix=".pull-"))
        try:
            parts = [str(scratch / str(i)) for i in range(len(keys))]
            self.fs.get([self.remote_path(k) for k in keys], parts)
            for key, part in zip(keys, parts):
                (self.cache / key).parent.mkdir(parents=True, exist_ok=True)
                os.replace(part, self.cache / key)
            return set(keys)
        except FileNotFoundError:
            return set()  # fetched one by one instead, and the key the store lacks named
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"storage {self.url}: cannot read {len(keys):,} files: {_why(exc)}") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _stale(self, key: str) -> bool:
        local = self.cache / key
        if not local.is_file():
            return True
        try:
            self.fs.invalidate_cache(self.remote_path(key))  # another machine may have written it since
            info = self.fs.info(self.remote_path(key))
        except FileNotFoundError:
            return False
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"storage {self.url}: cannot read {key}: {_why(exc)}") from None
        modified = info.get("LastModified") or info.get("mtime")
        newer = modified is not None and getattr(modified, "timestamp", lambda: modified)() > local.stat().st_mtime
        return info.get("size") != local.stat().st_size or newer

    def _get(self, key: str) -> None:
        """One key: a file (written under a temporary name, then renamed) or a folder (a report)."""
        local, remote = self.cache / key, self.remote_path(key)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        try:
            if self.fs.isdir(remote):
                self.fs.get(remote, str(local), recursive=True)
            else:
                self.fs.get_file(remote, str(tmp))
                os.replace(tmp, local)
        except FileNotFoundError:
            raise StorageError(f"storage {self.url}: {key} is not in the store") from None
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"storage {self.url}: cannot read {key}: {_why(exc)}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def push(self, paths: Iterable[Path]) -> None:
        """Store these local files (or folders) of the data directory at their keys (files in one concurrent batch)."""
        if not self.remote:
            return
        paths = [Path(p) for p in paths]
        files = [p for p in paths if not p.is_dir()]
        try:
            if files:
                self.fs.put([str(p) for p in files], [self.remote_path(self.key(p)) for p in files])
            for folder in (p for p in paths if p.is_dir()):
                self.fs.put(str(folder), self.remote_path(self.key(folder)), recursive=True)
        except Exception as exc:  # noqa: BLE001
            what = self.key(paths[0]) if len(paths) == 1 else f"{len(paths):,} files"
            raise StorageError(f"storage {self.url}: cannot write {what}: {_why(exc)}") from None


def link_or_copy(source: Path, target: Path) -> None:
    """One copy on disk where the file system allows (a hard link), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
