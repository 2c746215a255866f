"""Publishing versions into the served root: atomic, never touching a published file.

A build writes into `versions/.VER.tmp/`, which is renamed to `versions/VER` only when
complete; `current` and `previous` are switched by renaming a new symlink over the old
(`os.replace`), so a reader sees the old version or the new one, never a half of either.
Clients that booted a version keep reading its files (LTSP issue 928 rewrote them).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from netboot import layout
from netboot.image.errors import ImageError
from netboot.image.mounts import remove_tree
from netboot.image.signals import DeferredInterrupts

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


def write_manifest(directory: Path, manifest: dict) -> None:
    path = directory / layout.MANIFEST
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o644)


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


def prune(image_dir: Path, keep: int) -> list[str]:
    """Remove versions beyond the newest `keep` that neither link points at."""
    versions = published_versions(image_dir)
    protected = {link_target(image_dir, layout.CURRENT), link_target(image_dir, layout.PREVIOUS)}
    newest = set(versions[-keep:]) if keep > 0 else set()
    removed = [v for v in versions if v not in newest and v not in protected]
    for version in removed:
        remove_tree(image_dir / layout.VERSIONS / version)
    return removed


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
