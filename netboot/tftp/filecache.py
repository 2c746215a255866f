"""Whole small files in memory, shared by the transfers that serve them.

A room boots the same iPXE binary on every client: with the cache that is one read and one
copy in memory, however many transfers serve it, instead of a read-ahead buffer and a few
executor reads per transfer. An entry is one *version* of a file, keyed by what changes when
the file is replaced (device, inode) or rewritten (size, mtime, ctime): a transfer serves the
bytes it started with, whole, and the next client gets the new version, never a mix.
Bounded per file and in total (least recently used goes first); see docs/security.md.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

MAX_FILE = 4 * 1024 * 1024  # iPXE binaries are 70 KB - 1 MB; kernels take the read-ahead path
MAX_TOTAL = 32 * 1024 * 1024

Version = tuple[int, int, int, int, int]


def version_of(info: os.stat_result) -> Version:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class FileCache:
    """Called from executor threads (it reads files), hence the lock around the index."""

    def __init__(self, max_file: int = MAX_FILE, max_total: int = MAX_TOTAL) -> None:
        self.max_file = max_file
        self.max_total = max_total
        self._entries: OrderedDict[Version, bytes] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def content(self, fd: int) -> bytes | None:
        """The whole content of the open regular file `fd`, or None if it is too big or
        changed while it was read (the caller then streams it from `fd`)."""
        before = os.fstat(fd)
        if before.st_size > self.max_file:
            return None
        key = version_of(before)
        with self._lock:
            data = self._entries.get(key)
            if data is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return data
        data = _read_all(fd, before.st_size)
        if data is None or version_of(os.fstat(fd)) != key:
            return None  # being written: serve it the old way, cache nothing
        with self._lock:
            self.misses += 1
            if key not in self._entries:
                self._entries[key] = data
                self._total += len(data)
                self._evict()
        return data

    def _evict(self) -> None:
        while self._total > self.max_total and self._entries:
            _, dropped = self._entries.popitem(last=False)
            self._total -= len(dropped)

    @property
    def size(self) -> int:
        return self._total


def _read_all(fd: int, size: int) -> bytes | None:
    """Exactly `size` bytes from offset 0, or None if the file is not that long any more."""
    data = os.pread(fd, size + 1, 0)
    return data if len(data) == size else None
