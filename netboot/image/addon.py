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
import re
import shutil
import subprocess
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


UDP_RECEIVER = "udp-receiver"
# ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and the loader's
# "/lib64/ld-linux-x86-64.so.2 (0x...)"
LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(binary: Path) -> tuple[Path, list[Path]]:
    """(loader, libraries) a dynamic binary needs, as `ldd` on the build host lists them
    (the way initramfs-tools' copy_exec decides). Raises InitrdError when ldd cannot."""
    try:
        out = subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise InitrdError(f"ldd {binary} failed: {exc}") from None
    loader = None
    libraries = []
    for line in out.splitlines():
        match = LDD_PATH.search(line)
        if match is None:
            continue
        path = Path(match.group(1))
        if "=>" not in line:  # only the loader is listed without a name
            loader = path
        else:
            libraries.append(path)
    if loader is None:
        raise InitrdError(f"ldd {binary}: no dynamic loader listed")
    return loader, libraries


def add_udp_receiver(archive: cpio.Archive) -> bool:
    """/netboot/bin/udp-receiver with its own loader (/netboot/lib/ld.so) and libraries,
    for `netboot.transfer=multicast`; lib.sh runs it as `ld.so --library-path /netboot/lib`,
    so it never mixes with the image's glibc. False (and a warning) when udpcast is not
    installed on the build host: clients then fall back to HTTP."""
    found = shutil.which(UDP_RECEIVER)
    if found is None:
        log.warning(
            "%s not installed (package udpcast): multicast clients will use HTTP", UDP_RECEIVER
        )
        return False
    binary = Path(found).resolve()
    try:
        loader, libraries = shared_libraries(binary)
    except InitrdError as exc:
        log.warning("cannot bundle %s: %s", UDP_RECEIVER, exc)
        return False
    archive.copy(f"netboot/bin/{UDP_RECEIVER}", binary, 0o755)
    archive.copy("netboot/lib/ld.so", loader.resolve(), 0o755)
    for library in libraries:
        archive.copy(f"netboot/lib/{library.name}", library.resolve(), 0o755)
    return True


def addon_archive(kernel_trees: dict[str, Path]) -> cpio.Archive:
    """The add-on's entries; kernel_trees maps kernel version -> tree with its modules."""
    archive = cpio.Archive()
    archive.copy("scripts/netboot", client_file("scripts/netboot"), 0o755)
    add_client_files(archive)
    add_udp_receiver(archive)
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
