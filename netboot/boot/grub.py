"""The GRUB renderer: a `BootMenu` in, a GRUB config out; and what the Secure Boot chain
(firmware → shim → Debian's signed GRUB network image) fetches over TFTP.

Debian 12's signed `grubnet*.efi` has `/grub` as its prefix on the TFTP server of the DHCP
ACK (`siaddr`), reads `$prefix/grub.cfg` and nothing per client, has no `http` module and
may load none under Secure Boot (docs/secure-boot.md). So `grub/grub.cfg` is one text for
every client that sources `grub/clients/<mac>.cfg`, which netboot renders on request; both
are virtual TFTP files (`virtual_file`), and kernels and initrds come over TFTP too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netboot.boot.arch import ARCH_EFI_ARM64, ARCH_EFI_BC, ARCH_EFI_X64
from netboot.boot.cmdline import for_client
from netboot.boot.menu import KIND_LINUX, BootEntry, BootMenu
from netboot.records import normalize_mac

GRUB_DIR = "grub"
CLIENTS_DIR = f"{GRUB_DIR}/clients"
CLIENT_FILE = re.compile(rf"^{CLIENTS_DIR}/([0-9A-Fa-f:-]{{12,17}})\.cfg$")


@dataclass(frozen=True)
class ShimChain:
    """Where shim and GRUB of one CPU go in the TFTP root, and the `[grub]` keys naming their
    sources. Shim loads `<directory of its own boot file>/<grub name>` (its built-in name)."""

    directory: str
    shim: str
    grub: str
    shim_key: str
    grub_key: str

    @property
    def shim_path(self) -> str:
        return f"{self.directory}/{self.shim}"

    @property
    def grub_path(self) -> str:
        return f"{self.directory}/{self.grub}"


X64 = ShimChain("efi/x64", "shimx64.efi", "grubx64.efi", "shim_x64", "grub_x64")
ARM64 = ShimChain("efi/aa64", "shimaa64.efi", "grubaa64.efi", "shim_arm64", "grub_arm64")
CHAINS: dict[int, ShimChain] = {ARCH_EFI_BC: X64, ARCH_EFI_X64: X64, ARCH_EFI_ARM64: ARM64}

# Every client reads this ($prefix/grub.cfg). `[ -e ]` cannot see TFTP files, so the
# per-client part is sourced unconditionally; a missing one leaves only "local disk".
SHARED_CONFIG = """\
# netboot: read by every GRUB client; the menu itself is rendered per MAC by netboot
source $prefix/clients/$net_default_mac.cfg
if [ "$netboot_menu" != "1" ]; then
  echo "netboot: no menu for $net_default_mac from $net_default_server"
  menuentry "Boot from local disk" --id local {
    exit 1
  }
fi
"""


def uses_grub(config: Any) -> bool:
    """Whether any client of this config may be sent the shim → GRUB chain."""
    clients = [config.clients.defaults, *config.clients.by_mac.values()]
    return config.boot.loader == "grub" or any(c.get("loader") == "grub" for c in clients)


def quote(text: str) -> str:
    """One GRUB word, taken literally: no `$` expansion, no splitting."""
    return "'" + text.replace("'", "'\\''") + "'"


def _words(text: str) -> str:
    return " ".join(quote(word) for word in text.split())


def _tftp_path(path: str) -> str:
    """A path under the served root as GRUB names it on its TFTP root (leading `/`)."""
    return "/" + path.lstrip("/")


def grub_boots(entry: BootEntry) -> bool:
    """GRUB here loads a kernel and initrds from the TFTP server it came from: a `linux`
    entry of paths. Chain and ISO (sanboot) entries, and files at a URL, are iPXE's only."""
    paths = (entry.kernel, *(path for _, path in entry.initrds))
    return entry.kind == KIND_LINUX and not any("://" in path for path in paths)


def client_config(menu: BootMenu) -> str:
    """This client's menu: the same entries, default, timeout and kernel command line as its
    iPXE script, file paths on the TFTP server GRUB booted from, and local disk. An entry
    GRUB cannot boot is a comment; the default is then the first entry it can (as when the
    named default is missing)."""
    mac = menu.client.mac
    bootable = [entry for entry in menu.entries if grub_boots(entry)]
    default = menu.default if menu.default in bootable else next(iter(bootable), None)
    lines = [
        f"# netboot: menu for {mac}",
        "set netboot_menu=1",
        f"set timeout={menu.timeout}",
        f"set default={default.target if default else 'local'}",
    ]
    for entry in menu.entries:
        if entry not in bootable:
            lines.append(f"# netboot: entry {entry.target} ({entry.kind}) needs iPXE: skipped")
            continue
        initrds = " ".join(quote(_tftp_path(path)) for _, path in entry.initrds)
        cmdline = for_client(menu.cmdline(entry), mac)
        lines += [
            f"menuentry {quote(entry.label)} --id {entry.target} {{",
            f"  echo {quote('netboot: loading ' + entry.label)}",
            f"  linux {quote(_tftp_path(entry.kernel))} {_words(cmdline)}".rstrip(),
            f"  initrd {initrds}",
            "}",
        ]
    lines += ['menuentry "Boot from local disk" --id local {', "  exit 1", "}", ""]
    return "\n".join(lines)


def virtual_file(path: str, menu_for: Callable[[str], BootMenu]) -> bytes | None:
    """The content of a generated TFTP file, or None when `path` is not one of them.
    `menu_for(mac)` is the policy's menu of that client (reads the served root)."""
    name = re.sub(r"/+", "/", path).lstrip("/")
    if name == f"{GRUB_DIR}/grub.cfg":
        return SHARED_CONFIG.encode()
    match = CLIENT_FILE.match(name)
    if match is None:
        return None
    try:
        mac = normalize_mac(match.group(1))
    except ValueError:
        return None
    return client_config(menu_for(mac)).encode()
