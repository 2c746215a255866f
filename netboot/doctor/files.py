"""The served root: an iPXE binary per client architecture, bootable images whose files
match their manifest, and room for the next build."""

from __future__ import annotations

import shutil
from pathlib import Path

from netboot import layout
from netboot.boot.arch import ARCH_TABLE
from netboot.config import Config
from netboot.doctor import Finding, note, ok, problem
from netboot.image.manifest import Manifest
from netboot.image.publish import sha256_file

MUST_BOOT = ("bios", "efi-x64")  # most machines; the rest only if the site has them
GIB = 1 << 30
BUILD_HEADROOM = 2  # a build stages a new squashfs beside the current one


def _binary_names(config: Config) -> dict[str, list[str]]:
    """firmware name -> the `[ipxe]` file names it may be answered with, first choice first."""
    names: dict[str, list[str]] = {}
    for arch in ARCH_TABLE.values():
        keys = [arch.boot_file_key] + ([arch.fallback_key] if arch.fallback_key else [])
        names.setdefault(arch.firmware, [getattr(config.ipxe, key) for key in keys])
    return names


def ipxe_findings(config: Config) -> list[Finding]:
    """Where serve finds (tftp_root/ipxe) or copies from (binaries_dir) each arch's binary."""
    from netboot.server import IPXE_BINARIES  # the names serve copies at start

    served = config.tftp_root / layout.IPXE_DIR
    source = Path(config.ipxe.binaries_dir)
    findings = []
    for firmware, names in _binary_names(config).items():
        present = [
            n
            for n in names
            if (served / n).is_file() or (n in IPXE_BINARIES and (source / n).is_file())
        ]
        if present:
            findings.append(ok(f"{firmware} clients get ipxe/{present[0]}"))
            continue
        wanted = " or ".join(names)
        text = f"no iPXE binary for {firmware} clients ({wanted} in {served} or {source})"
        if firmware in MUST_BOOT:
            findings.append(problem(text, "install the 'ipxe' package (apt install ipxe)"))
        else:
            findings.append(note(text, f"only if you have {firmware} machines: put one there"))
    return findings


def version_problems(version: layout.ImageVersion) -> list[str]:
    """What keeps one published version from booting (empty: bootable, files as manifested)."""
    missing = [
        name
        for name, present in (
            (layout.KERNEL, version.kernel),
            (layout.SQUASHFS, version.squashfs),
            (f"{layout.INITRD} or {layout.STANDALONE_INITRD}",
             version.initrd or version.standalone_initrd),
        )
        if present is None
    ]  # fmt: skip
    found = [f"{name} missing" for name in missing]
    if not (version.directory / layout.MANIFEST).is_file():
        return [*found, f"{layout.MANIFEST} missing"]
    manifest = Manifest.read(version.directory)
    squashfs = version.squashfs
    if squashfs is not None:
        size = squashfs.stat().st_size
        if manifest.size != size:
            found.append(f"{layout.SQUASHFS} is {size} bytes, the manifest says {manifest.size}")
        elif manifest.sha256 and sha256_file(squashfs) != manifest.sha256:
            found.append(f"{layout.SQUASHFS} sha256 differs from the manifest's")
    return found


def image_findings(config: Config) -> list[Finding]:
    root = config.root
    images_dir = root / layout.IMAGES_DIR
    names = (
        sorted(p.name for p in images_dir.iterdir() if p.is_dir()) if images_dir.is_dir() else []
    )
    if not names:
        return [note(f"no image published in {images_dir}", "netboot image SOURCE")]
    findings = []
    uses_addon = False
    for name in names:
        version = layout.resolve_link(root, name, layout.CURRENT)
        if version is None:
            findings.append(
                problem(
                    f"image {name} has no current version",
                    f"netboot image -r {name} restores the previous one, or rebuild it",
                )
            )
            continue
        uses_addon |= version.initrd is not None
        issues = version_problems(version)
        if issues:
            findings.append(
                problem(
                    f"image {name} version {version.version} does not boot: {'; '.join(issues)}",
                    f"rebuild it (netboot image), or go back with netboot image -r {name}",
                )
            )
        else:
            findings.append(ok(f"image {name} version {version.version} is complete"))
    if uses_addon and not (root / layout.ADDON_INITRD).is_file():
        findings.append(
            problem(
                f"no {root / layout.ADDON_INITRD}: images cannot fetch their root", "netboot initrd"
            )
        )
    return findings


def disk_findings(config: Config) -> list[Finding]:
    """Room for a build: twice the biggest current squashfs, at least 1 GiB."""
    root = config.root
    if not root.is_dir():
        return [note(f"served root {root} does not exist yet", "netboot serve creates it")]
    sizes = [
        v.squashfs.stat().st_size for v in layout.current_images(root) if v.squashfs is not None
    ]
    need = max(GIB, BUILD_HEADROOM * max(sizes, default=0))
    free = shutil.disk_usage(root).free
    text = f"{free / GIB:.1f} GiB free for builds in {root}"
    if free < need:
        return [
            problem(
                text,
                f"free at least {need / GIB:.1f} GiB (fewer old versions: image.keep_versions)",
            )
        ]
    return [ok(text)]
