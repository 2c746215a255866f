"""The add-on initrd `ROOT/netboot.img`: teaches an image's own initramfs-tools initramfs
to boot netboot's squashfs (over HTTP or NFS) with a tmpfs overlay.

iPXE loads it as a second initrd; the kernel unpacks it over the image's initramfs, so it
is an *uncompressed* newc cpio that only adds files under names the image does not use:
`/scripts/netboot` (run for `boot=netboot`) and `/netboot/` (busybox-static, the shared
client library, and per kernel version the modules initramfs-tools leaves out, plus the
kernel's NFS client for the NFS method, listed apart in `nfs-order`).
One add-on serves every image: modules are bundled for each kernel version published.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from netboot import layout
from netboot.atomic import write_atomically
from netboot.image import cpio
from netboot.image.manifest import Manifest
from netboot.image.standalone import (
    NFS_MODULES,
    InitrdError,
    add_client_files,
    add_modules,
    add_nfs_modules,
    client_file,
    extract_kernel_files,
)

log = logging.getLogger("netboot.image.addon")


def published_kernels(root: Path) -> dict[str, Path]:
    """kernel_version -> a root.squashfs that has it, over every published version."""
    kernels: dict[str, Path] = {}
    for path in sorted((root / layout.IMAGES_DIR).glob(f"*/{layout.VERSIONS}/*/*")):
        if path.name != layout.MANIFEST:
            continue
        version = Manifest.read(path.parent).kernel_version
        squashfs = path.parent / layout.SQUASHFS
        if version and squashfs.is_file():
            kernels.setdefault(version, squashfs)
    return kernels


def addon_archive(kernel_trees: dict[str, Path]) -> cpio.Archive:
    """The add-on's entries; kernel_trees maps kernel version -> tree with its modules."""
    archive = cpio.Archive()
    archive.copy("scripts/netboot", client_file("scripts/netboot"), 0o755)
    add_client_files(archive)
    for version, tree in sorted(kernel_trees.items()):
        add_modules(archive, tree, version)
        add_nfs_modules(archive, tree, version)
    return archive


def build_addon(root: Path, output: Path) -> list[str]:
    """Write the add-on for the images published under root; returns the kernel versions
    whose modules it carries. Blocking (unsquashfs): run it off the event loop."""
    kernels = published_kernels(root)
    with tempfile.TemporaryDirectory(prefix="netboot-addon-") as tmp:
        trees: dict[str, Path] = {}
        for version, squashfs in kernels.items():
            tree = Path(tmp) / version
            try:
                trees[version] = extract_kernel_files(squashfs, version, tree, NFS_MODULES)
            except InitrdError as exc:
                # one broken image must not stop the add-on for all the others
                log.warning("no modules for kernel %s: %s", version, exc)
        data = addon_archive(trees).to_bytes()
    write_atomically(output, data)
    return sorted(trees)
