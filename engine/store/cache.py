"""The disk cache: diskcache's SQLite index and files, holding only checksummed raw bytes.

A cache directory may be shared on a GPU box, so reading it must never run code: values are plain
bytes (numpy ``.npz`` without object arrays, or UTF-8 JSON), the Disk refuses pickled entries, and a
SHA-256 checksum in front of every value catches truncated or overwritten files. A bad entry is
dropped and recomputed. Writes are single SQLite transactions: a run killed mid-write leaves no
entry, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path

import diskcache
from filelock import FileLock

from engine.errors import UserError
from engine.store.location import default_cache_dir

log = logging.getLogger(__name__)

MAGIC = b"NTUI1\x00"
_DIGEST_BYTES = 32


class UnsafeEntry(Exception):
    """A cache entry that is not plain bytes (a pickle, a tampered row)."""


class BytesOnlyDisk(diskcache.Disk):
    """A diskcache Disk that stores and returns bytes and str only, never pickles."""

    def put(self, key):
        if not isinstance(key, str):
            raise TypeError("cache keys are strings")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise UnsafeEntry("pickled cache key")
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not isinstance(value, bytes):
            raise TypeError("cache values are bytes")
        return super().store(value, read, key=key)

    def fetch(self, mode, filename, value, read):
        if mode not in (diskcache.core.MODE_RAW, diskcache.core.MODE_BINARY):
            raise UnsafeEntry(f"cache entry of mode {mode} refused: only raw bytes are read")
        if filename is not None and (os.path.isabs(filename) or ".." in Path(filename).parts):
            raise UnsafeEntry("cache entry points outside the cache directory")
        return super().fetch(mode, filename, value, read)


def _seal(payload: bytes) -> bytes:
    return MAGIC + hashlib.sha256(payload).digest() + payload


def _unseal(blob: bytes) -> bytes | None:
    """The payload, or None when the blob is damaged."""
    head = len(MAGIC) + _DIGEST_BYTES
    if not isinstance(blob, bytes) or len(blob) < head or not blob.startswith(MAGIC):
        return None
    payload = blob[head:]
    if hashlib.sha256(payload).digest() != blob[len(MAGIC) : head]:
        return None
    return payload


INDEX = "cache.db"  # diskcache's SQLite index; beside it, its WAL files and the large values


def _is_damage(error: BaseException) -> bool:
    """SQLite's word for a file that is not (or no longer) a database; not a lock, a full disk or
    a read-only folder (those are OperationalError), which the same index may survive."""
    return isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError)


def _set_aside(directory: Path) -> Path:
    """Rename the damaged index (and its WAL files, which belong to it alone) beside itself, under a
    name no other file has; the values and everything else stay where they are."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = directory / f"{INDEX}.damaged-{stamp}"
    number = 1
    while aside.exists():
        number += 1
        aside = directory / f"{INDEX}.damaged-{stamp}-{number}"
    os.replace(directory / INDEX, aside)
    for suffix in ("-wal", "-shm"):
        companion = directory / f"{INDEX}{suffix}"
        if companion.exists():
            os.replace(companion, aside.with_name(aside.name + suffix))
    return aside


class ResultCache:
    """Checksummed byte values under string keys; every failure degrades to a cache miss."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.warnings: list[str] = []  # a failed write, said once
        self.set_aside: str | None = None  # what became of a damaged index, said as the cache opens
        try:
            if not directory.is_dir():
                # A folder made here is private (it may hold results of private models); one that
                # exists keeps its mode: a team's shared cache (mode 2775, say) stays shared.
                directory.mkdir(parents=True, mode=0o700)
                os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask
            self._cache = self._open_index()
        except (OSError, sqlite3.Error, UnsafeEntry) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise UserError(f"cannot use cache directory {directory}: {reason}") from error

    def _open_index(self) -> diskcache.Cache:
        """The index, opened and read once (a damaged one fails here, not mid-run). A damaged index
        is set aside under a new name and a fresh one started, with one warning saying where the
        old one is, so that the next runs do not go without a cache until someone moves it."""
        try:
            return self._index()
        except sqlite3.Error as error:
            if not _is_damage(error):
                raise
            damage = str(error)
        # Under a lock, so that two processes meeting the same damage set aside one file: the
        # second finds the first's fresh index working and keeps it.
        with FileLock(str(self.directory / f"{INDEX}.repair.lock")):
            try:
                return self._index()
            except sqlite3.Error as error:
                if not _is_damage(error):
                    raise
            aside = _set_aside(self.directory)
            cache = self._index()
        self.set_aside = (
            f"warning: the cache index {self.directory / INDEX} was damaged ({damage}): it is set aside "
            f"as {aside} and a fresh index started; results are computed again as they are needed"
        )
        return cache

    def _index(self) -> diskcache.Cache:
        cache = diskcache.Cache(
            str(self.directory), disk=BytesOnlyDisk, size_limit=2**40, eviction_policy="none"
        )
        try:
            cache.get("probe", default=None)
        except BaseException:
            cache.close()
            raise
        return cache

    def close(self) -> None:
        self._cache.close()

    def get(self, key: str) -> bytes | None:
        try:
            blob = self._cache.get(key, default=None, retry=True)
        except (UnsafeEntry, OSError, sqlite3.Error, EOFError, ValueError) as error:
            log.warning("cache entry %s unreadable (%s): recomputing", key, error)
            self.delete(key)
            return None
        if blob is None:
            return None
        payload = _unseal(blob)
        if payload is None:
            log.warning("cache entry %s failed its checksum: recomputing", key)
            self.delete(key)
        return payload

    def set(self, key: str, payload: bytes) -> bool:
        """Store ``payload``; a full or read-only disk gives one warning and no entry."""
        try:
            self._cache.set(key, _seal(payload), retry=True)
            return True
        except (OSError, sqlite3.Error) as error:
            if not self.warnings:  # one failed write says it all: the next ones fail the same way
                message = (
                    f"warning: cannot write to the cache in {self.directory} ({error}): results are "
                    "not being kept and will be computed again next time; free space or pass --cache-dir"
                )
                self.warnings.append(message)
                log.warning(message)
            self.delete(key)
            return False

    def delete(self, key: str) -> None:
        try:
            self._cache.delete(key, retry=True)
        except (UnsafeEntry, OSError, sqlite3.Error) as error:
            log.warning("could not delete cache entry %s: %s", key, error)

    def contains(self, key: str) -> bool:
        try:
            return key in self._cache
        except (OSError, sqlite3.Error):
            return False

    def get_json(self, key: str):
        payload = self.get(key)
        if payload is None:
            return None
        try:
            return json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.delete(key)
            return None

    def set_json(self, key: str, value) -> bool:
        return self.set(key, json.dumps(value, sort_keys=True).encode("utf-8"))


def open_cache(directory: Path | str | None, enabled: bool = True) -> tuple[ResultCache | None, str | None]:
    """The cache, or (None, warning) when it cannot be used: the run then goes on uncached. A
    cache whose damaged index was set aside comes with the warning that says so."""
    if not enabled:
        return None, None
    directory = Path(directory).expanduser() if directory else default_cache_dir()[0]
    try:
        cache = ResultCache(directory)
    except UserError as error:
        return (
            None,
            f"warning: {error}; running without the cache (choose another cache directory to keep results)",
        )
    return cache, cache.set_aside
