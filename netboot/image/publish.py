"""Publishing versions into the served root: atomic, never touching a published file.

A build writes into `versions/.VER.tmp/`, which is renamed to `versions/VER` only when
complete; `current` and `previous` are switched by renaming a new symlink over the old
(`os.replace`), so a reader sees the old version or the new one, never a half of either.
Clients that booted a version keep reading its files (LTSP issue 928 rewrote them).

`publication()` is the whole transaction, shared by `netboot image` and `netboot kernel`:
lock, stage, write the manifest, switch, prune; anything that goes wrong before the switch
removes the staging directory and leaves the old version serving.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from netboot import layout
from netboot.image.errors import ImageError
from netboot.image.manifest import Manifest
from netboot.image.mounts import remove_tree
from netboot.image.signals import DeferredInterrupts
from netboot.in_use import recently_used

VERSION_FORMAT = "%Y%m%d-%H%M%S"
STAGING_SUFFIX = ".tmp"
LINK_TEMP_MARK = ".link-tmp-"


def new_version(versions: Path, now: datetime | None = None) -> str:
    """A UTC timestamp id, with -1, -2... when that second is already taken."""
    base = (now or datetime.now(UTC)).strftime(VERSION_FORMAT)
    candidate, n = base, 0
    while (versions / candidate).exists() or (versions / staging_name(candidate)).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def staging_name(version: str) -> str:
    return f".{version}{STAGING_SUFFIX}"


@contextmanager
def image_lock(image_dir: Path) -> Iterator[None]:
    """One build or revert per image at a time (flock, released if the process dies)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    lock_path = image_dir / ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ImageError(f"another netboot image run is working on {image_dir}") from None
        yield
    finally:
        os.close(fd)


def clean_stale(image_dir: Path) -> list[Path]:
    """Remove what a killed build left: `.VER.tmp` directories and temporary symlinks.
    Only called under the image lock, so no live build owns them."""
    removed = []
    versions = image_dir / layout.VERSIONS
    for entry in sorted(versions.glob(f".*{STAGING_SUFFIX}")):
        remove_tree(entry)
        removed.append(entry)
    for entry in image_dir.glob(f".*{LINK_TEMP_MARK}*"):
        entry.unlink()
        removed.append(entry)
    return removed


def create_staging(image_dir: Path, version: str) -> Path:
    versions = image_dir / layout.VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    staging = versions / staging_name(version)
    staging.mkdir(mode=0o700)
    return staging


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def link_target(image_dir: Path, name: str) -> str | None:
    """The version a link names ('versions/VER' -> 'VER'), if the link exists."""
    try:
        return os.path.basename(os.readlink(image_dir / name))
    except OSError:
        return None


def switch_link(image_dir: Path, name: str, version: str) -> None:
    """Point link `name` at versions/VERSION atomically."""
    temporary = image_dir / f".{name}{LINK_TEMP_MARK}{os.getpid()}"
    temporary.unlink(missing_ok=True)
    os.symlink(f"{layout.VERSIONS}/{version}", temporary)
    os.replace(temporary, image_dir / name)


def publish(image_dir: Path, staging: Path, version: str, backup: bool) -> Path:
    """Make a complete staging directory version VERSION and the current one; with
    backup, the old current becomes previous. Signals wait until this is done."""
    with DeferredInterrupts():
        for entry in staging.iterdir():
            fsync_path(entry)
        os.chmod(staging, 0o755)
        fsync_path(staging)
        final = image_dir / layout.VERSIONS / version
        os.rename(staging, final)
        fsync_path(final.parent)
        old = link_target(image_dir, layout.CURRENT)
        switch_link(image_dir, layout.CURRENT, version)
        if backup and old and old != version and (final.parent / old).is_dir():
            switch_link(image_dir, layout.PREVIOUS, old)
        fsync_path(image_dir)
    return final


def published_versions(image_dir: Path) -> list[str]:
    try:
        entries = (image_dir / layout.VERSIONS).iterdir()
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def prune(image_dir: Path, keep: int, in_use_days: float = 0) -> tuple[list[str], list[str]]:
    """Remove versions beyond the newest `keep` that neither link points at and no client
    was seen using in the last `in_use_days` days (the server's .in-use, netboot/in_use.py).
    Returns (removed, kept because in use)."""
    versions = published_versions(image_dir)
    protected = {link_target(image_dir, layout.CURRENT), link_target(image_dir, layout.PREVIOUS)}
    newest = set(versions[-keep:]) if keep > 0 else set()
    candidates = [v for v in versions if v not in newest and v not in protected]
    in_use = recently_used(image_dir, in_use_days)
    removed = [v for v in candidates if v not in in_use]
    for version in removed:
        remove_tree(image_dir / layout.VERSIONS / version)
    return removed, [v for v in candidates if v in in_use]


def revert(image_dir: Path) -> tuple[str, str]:
    """Swap current and previous; returns (new current, new previous)."""
    current = link_target(image_dir, layout.CURRENT)
    previous = link_target(image_dir, layout.PREVIOUS)
    versions = image_dir / layout.VERSIONS
    if previous is None or not (versions / previous).is_dir():
        raise ImageError(f"{image_dir.name} has no previous version to revert to")
    with DeferredInterrupts():
        switch_link(image_dir, layout.CURRENT, previous)
        if current and (versions / current).is_dir():
            switch_link(image_dir, layout.PREVIOUS, current)
        fsync_path(image_dir)
    return previous, current or ""


def discard(staging: Path) -> None:
    """Remove an unpublished staging directory; if that fails too, say so and leave it to
    the next run (`clean_stale`) rather than hide the error that got us here."""
    try:
        if staging.exists():
            remove_tree(staging)
    except (ImageError, OSError) as exc:
        print(f"netboot: warning: {staging} left behind: {exc}", file=sys.stderr)


@dataclass
class Publication:
    """One version on its way into an image: files go into `staging`, `commit` publishes."""

    image_dir: Path
    version: str
    staging: Path
    directory: Path | None = None  # versions/VER once committed
    pruned: list[str] = field(default_factory=list)
    kept_in_use: list[str] = field(default_factory=list)

    def commit(
        self,
        manifest: Manifest,
        backup: bool = True,
        keep: int | None = None,
        in_use_days: float = 0,
    ) -> Path:
        """Write the manifest, switch `current` to the new version (the old one becomes
        `previous` with backup) and, with `keep`, prune versions beyond the newest `keep`
        that no client was seen using in the last `in_use_days` days."""
        manifest.write(self.staging)
        self.directory = publish(self.image_dir, self.staging, self.version, backup)
        if keep is not None:
            self.pruned, self.kept_in_use = prune(self.image_dir, keep, in_use_days)
        return self.directory


@contextmanager
def publication(image_dir: Path) -> Iterator[Publication]:
    """The publish transaction of one image, under its lock: a fresh version id and its
    staging directory (stale ones of killed runs removed first).

    The block fills `staging` and calls `commit`. If it raises, or a signal interrupts
    it, the staging directory is removed and the old version keeps serving; a block that
    ends without committing (nothing new to publish) leaves nothing behind either.
    """
    with image_lock(image_dir):
        clean_stale(image_dir)
        version = new_version(image_dir / layout.VERSIONS)
        staged = Publication(image_dir, version, create_staging(image_dir, version))
        try:
            yield staged
        except BaseException:
            with DeferredInterrupts(reraise=False):
                discard(staged.staging)
            raise
        if staged.directory is None:
            discard(staged.staging)
