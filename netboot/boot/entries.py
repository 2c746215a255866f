"""The boot entries a client can choose: the served root's images, the config's own
`[entries.NAME]` (a kernel, a chained script, an ISO), and an LTSP tree.

Images are read from disk on every call (a directory listing and a few small files), so an
image published by `netboot image` shows up without a restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from netboot import layout
from netboot.boot.cmdline import Value, netboot_cmdline
from netboot.boot.menu import KIND_CHAIN, KIND_LINUX, KIND_MEMDISK, KIND_SANBOOT, BootEntry

# the kernel's own BOOTIF parameter, filled in by iPXE: which NIC booted
BOOTIF = "BOOTIF=01-${mac:hexhyp}"


def image_entries(
    root: Path, boot: Any, *, base: str, nfs_server: str, transfer: str = "http"
) -> list[BootEntry]:
    """Entries for the images of the served root, booted by the HTTP or NFS method.
    `boot` is the `[boot]` config section; `nfs_server` the address clients mount from;
    `transfer` how an HTTP-method client gets the squashfs (http or multicast)."""
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
        squashfs = f"{version_path}/{layout.SQUASHFS}"
        params: dict[str, Value] = {
            "server": base,
            "image": image.name,
            "version": image.version,
            "method": method,
            "size": image.manifest.get("size") or None,
            "sha256": image.manifest.get("sha256") or None,
            "settings": f"{base}/clients/${{mac}}",
        }
        if method == "http":
            params["url"] = f"{base}{squashfs}"
            params["transfer"] = transfer if transfer != "http" else None
        else:
            params["nfs"] = f"{nfs_server}:{boot.nfs_root or root}"
            params["path"] = squashfs.lstrip("/")
            params["toram"] = 1 if boot.to_ram else 0
        entries.append(
            BootEntry(
                name=image.name,
                label=f"{image.name} ({image.version})",
                kernel=f"{version_path}/{layout.KERNEL}",
                initrds=tuple(initrds),
                cmdline=netboot_cmdline(params),
                version=image.version,
            )
        )
    return entries


def config_entries(table: Mapping[str, Mapping[str, Any]]) -> list[BootEntry]:
    """The `[entries.NAME]` of the config (checked by netboot/config.py), in file order.
    Locations stay as given: a path under the served root or an absolute URL."""
    found = []
    for name, spec in table.items():
        label = spec["title"] or name
        if spec["kernel"]:
            initrds = tuple((Path(i.split("?")[0]).name, i) for i in spec["initrd"])
            # one line: a newline would end the iPXE command it is put in
            kind, first, cmdline = KIND_LINUX, spec["kernel"], " ".join(spec["cmdline"].split())
        else:
            iso_kind = KIND_MEMDISK if spec["iso_method"] == "memdisk" else KIND_SANBOOT
            kind = KIND_CHAIN if spec["chain"] else iso_kind
            first, initrds, cmdline = spec["chain"] or spec["iso"], (), ""
        found.append(BootEntry(name, label, first, initrds, cmdline, kind=kind, source="config"))
    return found


def for_firmware(
    choices: list[BootEntry], efi: bool
) -> tuple[list[BootEntry], tuple[tuple[BootEntry, str], ...]]:
    """The entries this firmware can boot, and the others with why: memdisk is a BIOS
    program (real-mode disk emulation), so UEFI clients are not offered its entries."""
    if not efi:
        return choices, ()
    refused = tuple((e, "memdisk needs BIOS") for e in choices if e.kind == KIND_MEMDISK)
    return [e for e in choices if e.kind != KIND_MEMDISK], refused


def ltsp_entries(server: Any, boot: Any, nfs_server: str) -> list[BootEntry]:
    """An existing LTSP tree, booted as LTSP's ltsp.ipxe does (NFS + ltsp.img), mounted from
    `nfs_server` (`boot.nfs_server` or us) and `boot.nfs_root` when set (a moved site), else
    `ltsp_root`. `server` is the `[server]` config section (ltsp_root, ltsp_tftp_root).
    Its squashfs images (`images/NAME.img`, LTSP's `:images` method) are `ltsp-NAME`; a
    chroot `NAME/` with an init (LTSP's `:roots` method: the directory itself is the NFS
    root) is `ltsp-NAME` too, or `ltsp-r_NAME` (LTSP's own item name for it) when an image
    has its name, as after `ltsp image NAME`. Both boot the kernel in ltsp_tftp_root/NAME."""
    ltsp_root = Path(server.ltsp_root)
    export = boot.nfs_root or str(ltsp_root)
    tftp = Path(server.ltsp_tftp_root)
    try:
        images = sorted(p.name.removesuffix(".img") for p in (ltsp_root / "images").glob("*.img"))
        chroots = sorted(p.name for p in ltsp_root.iterdir() if is_chroot(p))
    except OSError:
        return []
    found = [
        (
            name,
            name,
            f"{name} (LTSP)",
            f"nfsroot={nfs_server}:{export} ltsp.image=images/{name}.img loop.max_part=9",
        )
        for name in images
    ]
    found += [
        (
            f"r_{name}" if name in images else name,
            name,
            f"{name} (LTSP chroot)",
            f"nfsroot={nfs_server}:{export.rstrip('/')}/{name}",
        )
        for name in chroots
    ]
    entries = []
    for entry_name, name, label, nfs in found:
        kernel_dir = tftp / name
        if not (kernel_dir / "vmlinuz").is_file() or not (kernel_dir / "initrd.img").is_file():
            continue  # `ltsp kernel NAME` not run: nothing to boot it with
        entries.append(
            BootEntry(
                name=f"ltsp-{entry_name}",
                label=label,
                kernel=f"/ltsp/{name}/vmlinuz",
                initrds=(
                    ("ltsp.img", "/ltsp/ltsp.img"),
                    ("initrd.img", f"/ltsp/{name}/initrd.img"),
                ),
                cmdline=f"root=/dev/nfs {nfs} {BOOTIF}",
                source="ltsp",
            )
        )
    return entries


def is_chroot(path: Path) -> bool:
    """A directory of an LTSP tree holding a root file system: it has an init. Not followed
    as a link (an absolute one would point into this server's own root)."""
    return path.name != "images" and os.path.lexists(path / "sbin" / "init")
