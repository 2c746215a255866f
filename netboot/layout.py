"""The served root: the only contract between `netboot image` (writer) and `netboot serve`.

    ROOT/ipxe/                         iPXE binaries (copied from the ipxe package at start)
    ROOT/netboot.img                   client add-on initrd (uncompressed newc cpio)
    ROOT/images/NAME/versions/VER/     one published version, never modified after publishing:
        root.squashfs                    the image
        vmlinuz, initrd.img              kernel and the image's own initramfs (if any)
        standalone.img                   busybox initramfs (images without initramfs-tools)
        manifest.json                    {"name", "version", "size", "sha256", "kernel_version",
                                          "kernel", "initrd", "standalone_initrd", "created",
                                          "source", "cleanup", "mksquashfs_params",
                                          "kernel_from" (versions made by `netboot kernel`)}
    ROOT/images/NAME/current  -> versions/VER     switched atomically (rename of a new symlink)
    ROOT/images/NAME/previous -> versions/VER     the backup that `netboot image -r` restores

The server reads this on every request, so a publish is visible without a restart, and a
boot script always names a version directory: a client keeps the version it booted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

IPXE_DIR = "ipxe"
IMAGES_DIR = "images"
ADDON_INITRD = "netboot.img"
SQUASHFS = "root.squashfs"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
STANDALONE_INITRD = "standalone.img"
MANIFEST = "manifest.json"
CURRENT = "current"
PREVIOUS = "previous"
VERSIONS = "versions"


@dataclass(frozen=True)
class ImageVersion:
    """One published version of an image, as found in the served root."""

    name: str
    version: str
    directory: Path
    manifest: dict

    def file(self, name: str) -> Path | None:
        path = self.directory / name
        return path if path.is_file() else None

    @property
    def squashfs(self) -> Path | None:
        return self.file(SQUASHFS)

    @property
    def kernel(self) -> Path | None:
        return self.file(KERNEL)

    @property
    def initrd(self) -> Path | None:
        return self.file(INITRD)

    @property
    def standalone_initrd(self) -> Path | None:
        return self.file(STANDALONE_INITRD)

    @property
    def bootable(self) -> bool:
        return self.kernel is not None and self.squashfs is not None


def image_dir(root: Path, name: str) -> Path:
    return root / IMAGES_DIR / name


def version_dir(root: Path, name: str, version: str) -> Path:
    return image_dir(root, name) / VERSIONS / version


def _read_manifest(directory: Path) -> dict:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def resolve_link(root: Path, name: str, link: str) -> ImageVersion | None:
    """The version that `current` or `previous` of image NAME points at, if any."""
    link_path = image_dir(root, name) / link
    try:
        target = os.readlink(link_path)
    except OSError:
        return None
    directory = (link_path.parent / target).resolve()
    if not directory.is_dir():
        return None
    return ImageVersion(name, directory.name, directory, _read_manifest(directory))


def current_images(root: Path) -> list[ImageVersion]:
    """The current version of every image, sorted by name."""
    base = root / IMAGES_DIR
    try:
        names = sorted(p.name for p in base.iterdir() if p.is_dir())
    except OSError:
        return []
    found = []
    for name in names:
        version = resolve_link(root, name, CURRENT)
        if version is not None:
            found.append(version)
    return found


def find_version(root: Path, name: str, version: str) -> ImageVersion | None:
    directory = version_dir(root, name, version)
    if not directory.is_dir():
        return None
    return ImageVersion(name, version, directory, _read_manifest(directory))


def url_path(root: Path, path: Path) -> str:
    """The HTTP path of a file under the served root ('/images/x/...')."""
    return "/" + path.relative_to(root).as_posix()


def image_of_url(url_path: str) -> dict[str, str]:
    """{"image", "version"} of a file URL under a published version ('images/NAME/versions/
    VER/vmlinuz'), else {}: the client record notes which image a client booted."""
    parts = url_path.strip("/").split("/")
    if len(parts) >= 5 and parts[0] == IMAGES_DIR and parts[2] == VERSIONS:
        return {"image": parts[1], "version": parts[3]}
    return {}
