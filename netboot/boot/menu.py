"""The decision a renderer consumes: the entries one client may boot and which by default.

`BootPolicy.menu()` produces a `BootMenu`; `netboot/boot/ipxe.py` turns it into an iPXE
script. A GRUB script or a JSON API answer is another function of the same value, so no
renderer ever chooses an image, a default or a kernel parameter itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from netboot.boot.facts import ClientFacts

SAFE_TARGET = re.compile(r"[^A-Za-z0-9_.-]")

# What an entry boots; each renderer handles the kinds its boot loader can and skips the rest.
KIND_LINUX = "linux"  # `kernel` + `initrds` + `cmdline`
KIND_CHAIN = "chain"  # `kernel` is another iPXE script or EFI binary, chained
KIND_SANBOOT = "sanboot"  # `kernel` is an ISO image, booted as a SAN disk (BIOS and UEFI)
KIND_MEMDISK = "memdisk"  # `kernel` is an ISO image, loaded into RAM by memdisk (BIOS only)
KINDS = (KIND_LINUX, KIND_CHAIN, KIND_SANBOOT, KIND_MEMDISK)
MEMDISK_PATH = "/_/memdisk"  # where netboot serves syslinux's memdisk (`boot.memdisk`)


@dataclass(frozen=True)
class BootEntry:
    """One menu item: what it boots (`kind`), the file loaded first (`kernel`: a kernel, a
    script or an ISO; a URL path or an absolute URL), initrds (name, path or URL) and the
    kernel command line. `source` says where it came from: "image", "config" or "ltsp"."""

    name: str
    label: str
    kernel: str
    initrds: tuple[tuple[str, str], ...]
    cmdline: str
    version: str = ""
    kind: str = KIND_LINUX
    source: str = "image"

    @property
    def target(self) -> str:
        """A label safe as a script target name (iPXE `goto`, GRUB menuentry id)."""
        return "img-" + SAFE_TARGET.sub("_", self.name)


@dataclass(frozen=True)
class BootMenu:
    """What one client is offered. URLs of entries are paths; `base` makes them absolute."""

    client: ClientFacts
    entries: tuple[BootEntry, ...]
    default: BootEntry | None  # None: no entry, boot the local disk
    timeout: int  # seconds; 0 boots the default at once
    kernel_params: str  # site-wide then per-client extras, after every entry's own
    base: str  # http://SERVER[:PORT]
    server: str  # the server address, for the script's header and menu title
    # entries this client's firmware cannot boot, with why: shown, not offered
    unavailable: tuple[tuple[BootEntry, str], ...] = ()

    def cmdline(self, entry: BootEntry) -> str:
        return f"{entry.cmdline} {self.kernel_params}".strip()

    def url(self, path: str) -> str:
        """An absolute URL as given; a path under the served root made absolute."""
        if "://" in path:
            return path
        return f"{self.base}/{path.lstrip('/')}"
