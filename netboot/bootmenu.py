"""The boot entries a client can choose: the served root's images (and an LTSP tree).

Read from disk on every request (a directory listing and a few small files), so an image
published by `netboot image` shows up without a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from netboot import layout
from netboot.config import Config

SAFE_TARGET = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class BootEntry:
    """One menu item: a kernel, its initrds (name, URL path) and the kernel command line."""

    name: str
    label: str
    kernel: str
    initrds: tuple[tuple[str, str], ...]
    cmdline: str
    version: str = ""

    @property
    def target(self) -> str:
        return "img-" + SAFE_TARGET.sub("_", self.name)


def netboot_entries(config: Config, base: str) -> list[BootEntry]:
    """Entries for the images of the served root, booted by the HTTP or NFS method."""
    root = config.root
    boot = config.boot
    addon = root / layout.ADDON_INITRD
    entries = []
    for image in layout.current_images(root):
        if not image.bootable:
            continue
        version_path = layout.url_path(root, image.directory)
        if image.initrd is not None:
            initrds = [(layout.INITRD, f"{version_path}/{layout.INITRD}")]
            if addon.is_file():
                initrds.append((layout.ADDON_INITRD, "/" + layout.ADDON_INITRD))
        elif image.standalone_initrd is not None:
            initrds = [(layout.STANDALONE_INITRD, f"{version_path}/{layout.STANDALONE_INITRD}")]
        else:
            continue  # a kernel with nothing that could mount the image
        # the standalone initramfs fetches over HTTP only: it has no NFS client
        method = boot.method if image.initrd is not None else "http"
        params = [
            "boot=netboot",
            "ip=dhcp",
            "BOOTIF=01-${mac:hexhyp}",
            f"netboot.server={base}",
            f"netboot.image={image.name}",
            f"netboot.version={image.version}",
            f"netboot.method={method}",
        ]
        squashfs = f"{version_path}/{layout.SQUASHFS}"
        if method == "http":
            params.append(f"netboot.url={base}{squashfs}")
        else:
            server = boot.nfs_server or base.split("//", 1)[1].split(":", 1)[0].split("/")[0]
            export = boot.nfs_root or str(root)
            params += [
                f"netboot.nfs={server}:{export}",
                f"netboot.path={squashfs.lstrip('/')}",
                f"netboot.toram={1 if boot['to_ram'] else 0}",
            ]
        if image.manifest.get("size"):
            params.append(f"netboot.size={image.manifest['size']}")
        if image.manifest.get("sha256"):
            params.append(f"netboot.sha256={image.manifest['sha256']}")
        params.append(f"netboot.settings={base}/clients/${{mac}}")
        entries.append(
            BootEntry(
                name=image.name,
                label=f"{image.name} ({image.version})",
                kernel=f"{version_path}/{layout.KERNEL}",
                initrds=tuple(initrds),
                cmdline=" ".join(params),
                version=image.version,
            )
        )
    return entries


def ltsp_entries(config: Config, server_ip: str) -> list[BootEntry]:
    """An existing LTSP tree, booted exactly as the seed's chain does (NFS + ltsp.img)."""
    server = config.server
    ltsp_root = Path(server.ltsp_root)
    tftp = Path(server.ltsp_tftp_root)
    entries = []
    try:
        images = sorted((ltsp_root / "images").glob("*.img"))
    except OSError:
        return []
    for image in images:
        name = image.name.removesuffix(".img")
        kernel_dir = tftp / name
        if not (kernel_dir / "vmlinuz").is_file() or not (kernel_dir / "initrd.img").is_file():
            continue
        cmdline = (
            f"root=/dev/nfs nfsroot={server_ip}:{ltsp_root} "
            f"ltsp.image=images/{name}.img loop.max_part=9"
        )
        entries.append(
            BootEntry(
                name=f"ltsp-{name}",
                label=f"{name} (LTSP)",
                kernel=f"/ltsp/{name}/vmlinuz",
                initrds=(
                    ("ltsp.img", "/ltsp/ltsp.img"),
                    ("initrd.img", f"/ltsp/{name}/initrd.img"),
                ),
                cmdline=cmdline,
            )
        )
    return entries
