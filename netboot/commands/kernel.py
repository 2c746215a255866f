"""`netboot kernel`: extract the kernel and initramfs of an image, like `ltsp kernel`.

A published version is never modified, so choosing another kernel publishes a new
version: the same root.squashfs (hard-linked, no copy) with the kernel picked now, and
`-r` of `netboot image` goes back. `--output DIR` only extracts, for a look or a test.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import tempfile
from pathlib import Path

from netboot import layout
from netboot.commands.image_options import add_kernel_rule_flag, add_location_flags, image_config
from netboot.image import publish
from netboot.image.errors import ImageError, os_errors_shown
from netboot.image.kernel import KernelInfo, extract_kernel, extract_kernel_from_squashfs
from netboot.image.manifest import Manifest
from netboot.image.mounts import Mounts, assemble, enter_private_namespace
from netboot.image.signals import DeferredInterrupts, interrupts_raise
from netboot.image.sources import is_path, parse_source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_kernel_rule_flag(parser)
    add_location_flags(parser)
    parser.add_argument(
        "--output", type=Path, metavar="DIR", help="only extract vmlinuz and initrd.img into DIR"
    )
    parser.add_argument(
        "image",
        metavar="IMAGE|SOURCE",
        help="a published image name, or a source (chroot, disk, path) to take the kernel from",
    )


def _from_source(spec: str, base_dir: Path, dest: Path, kernel_regex: str | None) -> KernelInfo:
    """Mount a source read-only in a private namespace and extract from its tree."""
    if os.geteuid() != 0:
        raise ImageError("must run as root to mount a source (a published image needs not)")
    source = parse_source(spec, base_dir)
    enter_private_namespace()
    mounts = Mounts()
    workdir = Path(tempfile.mkdtemp(prefix="netboot-kernel-"))
    try:
        tree = assemble(source, workdir / "mnt", overlay=False, mounts=mounts)
        return extract_kernel(tree, dest, kernel_regex)
    finally:
        with DeferredInterrupts(reraise=False):
            mounts.close()
            shutil.rmtree(workdir, ignore_errors=True)


def _extract(args: argparse.Namespace, root: Path, base_dir: Path, dest: Path) -> KernelInfo:
    current = None if is_path(args.image) else layout.resolve_link(root, args.image, "current")
    if current is not None and current.squashfs is not None:
        return extract_kernel_from_squashfs(current.squashfs, dest, args.kernel_initrd)
    return _from_source(args.image, base_dir, dest, args.kernel_initrd)


def _image_name(args: argparse.Namespace, base_dir: Path) -> str:
    if not is_path(args.image) and "," not in args.image:
        return args.image
    return parse_source(args.image, base_dir).name


def _same_kernel(info: KernelInfo, current: layout.ImageVersion) -> bool:
    def same(new: Path | None, old: Path | None) -> bool:
        if new is None or old is None:
            return new is None and old is None
        return filecmp.cmp(new, old, shallow=False)

    return same(info.kernel, current.kernel) and same(info.initrd, current.initrd)


def _republish(args: argparse.Namespace, root: Path, base_dir: Path) -> str:
    """Publish current's squashfs with the kernel found now as a new version."""
    name = _image_name(args, base_dir)
    current = layout.resolve_link(root, name, layout.CURRENT)
    if current is None or current.squashfs is None:
        raise ImageError(f"{name} has no published version; run netboot image first")
    with publish.publication(layout.image_dir(root, name)) as staged:
        info = _extract(args, root, base_dir, staged.staging)
        if _same_kernel(info, current):
            return f"netboot kernel: {name}: {current.version} already has that kernel"
        os.link(current.squashfs, staged.staging / layout.SQUASHFS)
        manifest = Manifest.from_dict(current.manifest).derive(
            name=name,
            version=staged.version,
            kernel_version=info.version,
            kernel=info.kernel_source,
            initrd=info.initrd_source,
            standalone_initrd=False,  # standalone.img belongs to the old kernel's version
            kernel_from=args.image,
        )
        staged.commit(manifest, backup=True)
    initrd = "initrd.img" if info.initrd else "no initrd"
    return (
        f"netboot kernel: {name} {staged.version} published: kernel {info.version or '?'} "
        f"({info.kernel_source}), {initrd}"
    )


def _extract_only(args: argparse.Namespace, root: Path, base_dir: Path) -> str:
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    info = _extract(args, root, base_dir, output)
    initrd = f", {info.initrd}" if info.initrd else ", no initrd"
    return f"netboot kernel: {info.kernel} (kernel {info.version or '?'}){initrd}"


def run(args: argparse.Namespace) -> int:
    config = image_config(args)
    base_dir = Path(config.image.base_dir)
    with os_errors_shown(), interrupts_raise("nothing published"):
        if args.output is not None:
            print(_extract_only(args, config.root, base_dir))
        else:
            print(_republish(args, config.root, base_dir))
    return 0
