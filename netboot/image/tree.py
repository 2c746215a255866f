"""Looking at an image tree as the image itself would: symlinks resolve inside the tree.

An image's `/vmlinuz -> /boot/vmlinuz-6.1.0-10-amd64` or `etc/fstab -> /etc/fstab` must
never lead to the build host's files. Two views share one resolver: a mounted directory
and the listing of a squashfs (`unsquashfs -lln`), so kernel lookup works on both without
extracting anything.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Literal, Protocol

from netboot.image.errors import ImageError

Kind = Literal["file", "dir", "link", "other"]
MAX_LINKS = 40


class TreeView(Protocol):
    """What the resolver needs to know about a tree; paths are relative, '/'-separated,
    and every component but the last is already a real directory."""

    def kind(self, rel: str) -> Kind | None: ...

    def readlink(self, rel: str) -> str: ...

    def listdir(self, rel: str) -> list[str]: ...


class DirView:
    """A directory on disk (a mounted image or source tree)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def kind(self, rel: str) -> Kind | None:
        try:
            mode = os.lstat(self.path(rel)).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return "link"
        if stat.S_ISDIR(mode):
            return "dir"
        return "file" if stat.S_ISREG(mode) else "other"

    def readlink(self, rel: str) -> str:
        return os.readlink(self.path(rel))

    def listdir(self, rel: str) -> list[str]:
        try:
            return os.listdir(self.path(rel))
        except OSError:
            return []


_LISTING_LINE = re.compile(
    rb"^(?P<type>.)\S{9} \S+\s+(?P<size>\d+|\d+,\s*\d+) \d{4}-\d\d-\d\d \d\d:\d\d (?P<rest>.*)$"
)
_TYPES: dict[bytes, Kind] = {b"-": "file", b"d": "dir", b"l": "link"}


class ListingView:
    """A squashfs image seen through `unsquashfs -lln` (nothing extracted)."""

    def __init__(self, entries: dict[str, tuple[Kind, str]]) -> None:
        self.entries = entries
        self.children: dict[str, list[str]] = {}
        for rel in entries:
            if rel:
                parent, _, name = rel.rpartition("/")
                self.children.setdefault(parent, []).append(name)

    @classmethod
    def of_squashfs(cls, image: Path) -> ListingView:
        result = subprocess.run(
            ["unsquashfs", "-lln", "-d", "", str(image)], capture_output=True, check=False
        )
        if result.returncode != 0:
            last = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise ImageError(f"cannot list {image}: {last[0]}")
        return cls(parse_listing(result.stdout))

    def kind(self, rel: str) -> Kind | None:
        entry = self.entries.get(rel)
        return entry[0] if entry else None

    def readlink(self, rel: str) -> str:
        return self.entries[rel][1]

    def listdir(self, rel: str) -> list[str]:
        return list(self.children.get(rel, []))


def parse_listing(output: bytes) -> dict[str, tuple[Kind, str]]:
    """`unsquashfs -lln -d ''` output -> {relative path: (kind, link target)}."""
    entries: dict[str, tuple[Kind, str]] = {"": ("dir", "")}
    for line in output.split(b"\n"):
        match = _LISTING_LINE.match(line)
        if not match:
            continue
        kind = _TYPES.get(match["type"], "other")
        rest = match["rest"]
        target = b""
        if kind == "link":
            # the size column of a symlink is its target's length: split there, not on
            # " -> ", which may occur inside names
            size = int(match["size"])
            target = rest[len(rest) - size :]
            rest = rest[: len(rest) - size - len(b" -> ")]
        rel = os.fsdecode(rest).strip("/")
        entries[rel] = (kind, os.fsdecode(target))
    return entries


def resolve(view: TreeView, rel: str) -> str | None:
    """The symlink-free path of rel inside the tree ('' is the root), or None if it does
    not exist. Absolute links restart at the tree root and '..' stops there, as in a
    chroot."""
    pending = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = "/".join([*done, part])
        kind = view.kind(candidate)
        if kind is None:
            return None
        if kind == "link":
            links += 1
            if links > MAX_LINKS:
                return None
            target = view.readlink(candidate)
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        if pending and kind != "dir":
            return None
        done.append(part)
    return "/".join(done)


def resolve_file(view: TreeView, rel: str) -> str | None:
    """Like `resolve`, but only a regular file counts."""
    real = resolve(view, rel)
    return real if real is not None and view.kind(real) == "file" else None


def glob(view: TreeView, pattern: str) -> list[str]:
    """Shell-style glob inside the tree: '*' never crosses '/', dot files need a dot.
    Returned paths are as matched (a link stays a link), like the shell's."""
    matches = [""]
    for part in [p for p in pattern.split("/") if p]:
        found = []
        for base in matches:
            prefix = f"{base}/" if base else ""
            real = resolve(view, base)
            if real is None or view.kind(real) != "dir":
                continue
            if not any(c in part for c in "*?["):
                if view.kind(f"{real}/{part}" if real else part) is not None:
                    found.append(prefix + part)
                continue
            for name in sorted(view.listdir(real)):
                if name.startswith(".") and not part.startswith("."):
                    continue
                if fnmatch.fnmatchcase(name, part):
                    found.append(prefix + name)
        matches = found
    return [m for m in matches if m]
