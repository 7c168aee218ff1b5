"""Where images, checkpoints, reports and logs live: the data directory (the default, nothing to configure) or a
storage URL through fsspec (``s3://bucket/prefix`` with s3fs, any S3-compatible server), so workers on several
machines need one database and one bucket, not a shared folder.

A stored file has a key: its path relative to the data directory, the same text the database holds. With a storage
URL the data directory is the machine's local cache of the store: a worker pulls what a job reads into it and pushes
what the job writes (checkpoints, reports, logs). An image imported twice is stored once: import skips an image whose
SHA-256 the database already has. With a storage URL an import stores each chunk of images as one zip object (a
shard, named by its SHA-256; the database holds each image's shard): an object store charges a request per object,
and a few-KB image costs as much as a megabyte."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SCHEMES = ("file", "s3")  # local folders, and any S3-compatible server (s3fs)
ENDPOINT_ENV = "HWR_S3_ENDPOINT"  # an S3-compatible server that is not AWS (MinIO, Ceph, moto): its http(s) URL
SHARDS = "shards"  # packed images: shards/<sha256>.zip, members named by their keys
WHOLE_SHARD = 16  # members wanted from one shard from which the whole shard is fetched; fewer are read by byte range
RANGE_BLOCK = 1 << 16  # the read size of a ranged read (a member is a few KB; the shard's index some more)


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

    def stored(self, key: str) -> bool:
        """Whether the store holds ``key`` (False without a storage URL)."""
        try:
            return self.remote and self.fs.exists(self.remote_path(key))
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"storage {self.url}: cannot look for {key}: {_why(exc)}") from None

    def size(self, key: str) -> int | None:
        """The stored copy's size in bytes, read from the store now (None: not stored, or no storage URL)."""
        info = self._info(key) if self.remote else None
        return info["size"] if info else None

    def _info(self, key: str) -> dict | None:
        """The stored copy's metadata as the store has it now (another machine may have written it since); None when
        it is not stored."""
        try:
            self.fs.invalidate_cache(self.remote_path(key))
            return self.fs.info(self.remote_path(key))
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"storage {self.url}: cannot read {key}: {_why(exc)}") from None

    def pull(self, keys: Iterable[str], fresh: bool = False, shards: Mapping[str, str] | None = None) -> None:
        """Bring these keys into the local cache (those already there stay, unless ``fresh``: files a job rewrites,
        such as best.pt, are fetched again when the store's copy differs in size or is newer). ``shards``: the
        shard that holds a packed key (the database knows it)."""
        if not self.remote:
            return
        wanted = [k for k in dict.fromkeys(keys) if fresh or not (self.cache / k).exists()]
        if fresh:
            wanted = [k for k in wanted if self._stale(k)]
        shards = shards or {}
        self._unpack([k for k in wanted if shards.get(k)], shards)
        loose = [k for k in wanted if not shards.get(k)]
        fetched = self._get_many(loose) if len(loose) > 1 else set()
        for key in loose:
            if key not in fetched:
                self._get(key)  # one at a time: one file, a folder (a report), or the key the store lacks, named

    def pack(self, paths: list[Path]) -> str | None:
        """Store these files of the cache as one shard (a zip whose members are their keys) and return its key; None
        without a storage URL, where the data directory holds each file."""
        if not self.remote or not paths:
            return None
        fd, tmp = tempfile.mkstemp(dir=self.cache, prefix=".pack-", suffix=".zip")
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:  # images are compressed already
                for path in paths:
                    z.write(path, self.key(Path(path)))
            key = f"{SHARDS}/{file_hash(Path(tmp))}.zip"
            self._put(tmp, key)
        finally:
            os.unlink(tmp)
        return key

    def _put(self, local: str, key: str) -> None:
        try:
            self.fs.put_file(local, self.remote_path(key))
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"storage {self.url}: cannot write {key}: {_why(exc)}") from None

    def _unpack(self, keys: list[str], shards: Mapping[str, str]) -> None:
        """Packed keys from their shards: a shard many are wanted from is fetched whole (all in one concurrent
        batch), the others are read by byte range (the zip's index, then each member)."""
        if not keys:
            return
        members: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            members[shards[key]].append(key)
        whole = [shard for shard, ks in members.items() if len(ks) >= WHOLE_SHARD]
        scratch = Path(tempfile.mkdtemp(dir=self.cache, prefix=".pull-"))
        shard = ""
        try:
            fetched = {s: str(scratch / f"{i}.zip") for i, s in enumerate(whole)}
            if fetched:
                self.fs.get([self.remote_path(s) for s in fetched], list(fetched.values()))
            for shard, ks in members.items():
                source = fetched.get(shard) or self.fs.open(self.remote_path(shard), "rb", block_size=RANGE_BLOCK,
                                                             cache_type="readahead")
                with zipfile.ZipFile(source) as z:
                    for key in ks:
                        self._extract(z, key, scratch)
                if not isinstance(source, str):
                    source.close()
        except FileNotFoundError:
            raise StorageError(f"storage {self.url}: {shard or 'a shard'} is not in the store") from None
        except KeyError as exc:
            raise StorageError(f"storage {self.url}: {shard} does not hold {exc.args[0]}") from None
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"storage {self.url}: cannot read {shard or 'shards'}: {_why(exc)}") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _extract(self, z: zipfile.ZipFile, key: str, scratch: Path) -> None:
        """One member, written in the scratch folder, then renamed to its key: no half-written file under its name."""
        part = scratch / "member"
        with z.open(key) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        (self.cache / key).parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, self.cache / key)

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
        info = self._info(key)
        if info is None:
            return False
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


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes: an image's identity, a shard's name."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def link_or_copy(source: Path, target: Path) -> None:
    """One copy on disk where the file system allows (a hard link), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
