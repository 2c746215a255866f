"""A newc ("070701") cpio writer: the only archive format the kernel unpacks as initramfs.

Written in Python rather than by calling `cpio` so that the archive holds exactly the
entries we list, owned by root with fixed timestamps (reproducible builds), and so that
device nodes like /dev/console can be added without being root or calling mknod.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

TRAILER = "TRAILER!!!"


@dataclass
class Entry:
    """One archive member; `data` for files, `target` for symlinks, `rdev` for devices."""

    name: str
    mode: int
    data: bytes = b""
    target: str = ""
    rdev: tuple[int, int] = (0, 0)


@dataclass
class Archive:
    """Entries keyed by path; parent directories are added implicitly (mode 0755)."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def _parents(self, name: str) -> None:
        for parent in reversed(PurePosixPath(name).parents):
            key = str(parent)
            if key not in (".", "/", "") and key not in self.entries:
                self.entries[key] = Entry(key, stat.S_IFDIR | 0o755)

    @staticmethod
    def _clean(name: str) -> str:
        clean = str(PurePosixPath("/", name)).lstrip("/")
        if not clean or ".." in PurePosixPath(clean).parts:
            raise ValueError(f"bad archive path {name!r}")
        return clean

    def directory(self, name: str, mode: int = 0o755) -> None:
        name = self._clean(name)
        self._parents(name)
        self.entries[name] = Entry(name, stat.S_IFDIR | mode)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = self._clean(name)
        self._parents(name)
        self.entries[name] = Entry(name, stat.S_IFREG | mode, data=data)

    def copy(self, name: str, source: Path, mode: int | None = None) -> None:
        """Add a file from disk, keeping its permission bits unless `mode` is given."""
        perms = stat.S_IMODE(source.stat().st_mode) if mode is None else mode
        self.file(name, source.read_bytes(), perms)

    def symlink(self, name: str, target: str) -> None:
        name = self._clean(name)
        self._parents(name)
        self.entries[name] = Entry(name, stat.S_IFLNK | 0o777, target=target)

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        name = self._clean(name)
        self._parents(name)
        self.entries[name] = Entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def write(self, out: BinaryIO) -> None:
        """Write all entries, parents before children, then the trailer."""
        for ino, name in enumerate(sorted(self.entries), start=1):
            entry = self.entries[name]
            body = entry.target.encode() if stat.S_ISLNK(entry.mode) else entry.data
            _write_member(out, ino, entry, body)
        _write_member(out, 0, Entry(TRAILER, 0), b"")

    def to_bytes(self) -> bytes:
        import io

        buffer = io.BytesIO()
        self.write(buffer)
        return buffer.getvalue()


def _pad(out: BinaryIO, length: int) -> None:
    out.write(b"\0" * (-length % 4))


def _write_member(out: BinaryIO, ino: int, entry: Entry, body: bytes) -> None:
    name = entry.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (
        ino, entry.mode, 0, 0, nlink if entry.name != TRAILER else 1, 0, len(body),
        0, 0, entry.rdev[0], entry.rdev[1], len(name), 0,
    )  # fmt: skip
    header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
    out.write(header)
    out.write(name)
    _pad(out, len(header) + len(name))
    out.write(body)
    _pad(out, len(body))
