"""`netboot initrd`: build the client add-on `ROOT/netboot.img`, or with `--standalone
IMAGE` the busybox initramfs `standalone.img` for an image without initramfs-tools.

Rerun it after publishing an image with a new kernel version: the add-on carries the
squashfs/overlay/loop modules per kernel version. Client settings need no rebuild: they
are fetched at boot from the server.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from netboot import config as config_mod
from netboot import layout
from netboot.image.errors import ImageError, os_errors_shown
from netboot.image.manifest import Manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="served root (default: server.root)")
    parser.add_argument("--config", type=Path, help="config file (default: /etc/netboot)")
    parser.add_argument("-o", "--output", type=Path, help="add-on path (default: ROOT/netboot.img)")
    parser.add_argument(
        "--standalone",
        metavar="IMAGE",
        help="build standalone.img for published IMAGE instead of the add-on",
    )
    parser.add_argument(
        "--version", dest="image_version", metavar="VER", help="with --standalone: which version"
    )


def _path_and_reason(exc: OSError) -> str:
    """`/srv/netboot/netboot.img: Permission denied`: the file first, as initrd shows it."""
    return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")


def build_standalone_for(root: Path, name: str, version: str | None) -> Path:
    """standalone.img into a published version directory (current one by default)."""
    from netboot.image.standalone import InitrdError, build_standalone, extract_kernel_files

    if version:
        found = layout.find_version(root, name, version)
    else:
        found = layout.resolve_link(root, name, layout.CURRENT)
    if found is None:
        which = f"version {version}" if version else "current version"
        raise InitrdError(f"image {name!r} has no {which} under {root / layout.IMAGES_DIR}")
    kernel_version = Manifest.from_dict(found.manifest).kernel_version
    if not kernel_version:
        raise InitrdError(f"{found.directory / layout.MANIFEST} names no kernel_version")
    if found.squashfs is None:
        raise InitrdError(f"{found.directory} has no {layout.SQUASHFS}")
    output = found.directory / layout.STANDALONE_INITRD
    if output.exists():
        raise InitrdError(f"{output} already exists (published versions are never modified)")
    with tempfile.TemporaryDirectory(prefix="netboot-standalone-") as tmp:
        tree = extract_kernel_files(found.squashfs, kernel_version, Path(tmp))
        build_standalone(tree, kernel_version, output)
    return output


def run(args: argparse.Namespace) -> int:
    from netboot.image.addon import build_addon

    config = config_mod.load(args.config)
    root = args.root or config.root
    with os_errors_shown(_path_and_reason):
        if args.standalone:
            output = build_standalone_for(root, args.standalone, args.image_version)
            print(f"netboot initrd: wrote {output} ({output.stat().st_size} bytes)")
            return 0
        if args.image_version:
            raise ImageError("--version only applies with --standalone IMAGE")
        output = args.output or root / layout.ADDON_INITRD
        kernels = build_addon(root, output)
        size = output.stat().st_size
    bundled = ", ".join(kernels) if kernels else "none (no published image names a kernel)"
    print(f"netboot initrd: wrote {output} ({size} bytes); modules for: {bundled}")
    return 0
