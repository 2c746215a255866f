"""The DHCP boot answer: which file a PXE client fetches, or the script URL for iPXE.

proxyDHCP and the full DHCP server both put this answer into their replies; neither decides
it. Handing iPXE the script URL instead of the binary is what breaks the chainload loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netboot.boot.arch import ARCH_BIOS, ARCH_EFI_X64_HTTP, ARCH_TABLE, firmware_name
from netboot.boot.facts import ClientFacts
from netboot.boot.grub import CHAINS
from netboot.layout import IPXE_DIR


@dataclass(frozen=True)
class PxeAnswer:
    """The boot answer for one client: a TFTP path (siaddr = us) or an HTTP URL."""

    boot_file: str
    vendor_class: str  # "PXEClient" or "HTTPClient", echoed in option 60
    firmware: str
    arch: int | None
    ipxe: bool

    @property
    def via_http(self) -> bool:
        return self.boot_file.startswith("http://")


@dataclass(frozen=True)
class NoAnswer:
    """Why a PXE client gets no answer (logged once per packet, cheap)."""

    reason: str


def pxe_answer(
    facts: ClientFacts,
    *,
    ipxe: Any,
    tftp_root: Path,
    http_base: str,
    script_url: str,
    loader: str = "ipxe",
) -> PxeAnswer | NoAnswer:
    """The answer for `facts`: `ipxe` is the `[ipxe]` config section naming the binaries,
    looked for in `tftp_root/ipxe/` on every call (a binary added later is found).
    With `loader` "grub", UEFI x64 and arm64 PXE clients get shim instead (BIOS and HTTP
    Boot clients keep iPXE: see `uses_shim`)."""
    arch = facts.arch
    if facts.ipxe:
        return PxeAnswer(script_url, "PXEClient", firmware_name(arch), arch, True)
    if arch is None:
        arch = ARCH_BIOS  # PXE 2.1 ROMs that predate RFC 4578 are BIOS
    entry = ARCH_TABLE.get(arch)
    if entry is None:
        return NoAnswer(f"unsupported client architecture {arch}")
    if loader == "grub" and uses_shim(facts, arch):
        shim = CHAINS[arch].shim_path
        if not (tftp_root / shim).is_file():
            return NoAnswer(f"loader grub: no {shim} in the TFTP root (install shim-signed)")
        # shim takes its directory from the BOOTP file field: the DHCP side puts it there
        return PxeAnswer(shim, "PXEClient", entry.firmware, arch, False)
    keys = [entry.boot_file_key] + ([entry.fallback_key] if entry.fallback_key else [])
    names = [getattr(ipxe, key) for key in keys]
    name = next((n for n in names if (tftp_root / IPXE_DIR / n).is_file()), None)
    if name is None:
        return NoAnswer(f"no iPXE binary for {entry.firmware} (looked for {', '.join(names)})")
    if arch == ARCH_EFI_X64_HTTP or facts.http_client:
        url = f"{http_base}/{IPXE_DIR}/{name}"
        return PxeAnswer(url, "HTTPClient", entry.firmware, arch, False)
    return PxeAnswer(f"{IPXE_DIR}/{name}", "PXEClient", entry.firmware, arch, False)


def answer_directories(tftp_root: Path, loader: str) -> list[str]:
    """The directories whose files `pxe_answer` looks for with this `loader`: an answer
    worked out earlier holds while none of them gains, loses or renames a file (the DHCP
    template cache stats them for every packet)."""
    shim_dirs = sorted({str(tftp_root / c.directory) for c in CHAINS.values()})
    return [str(tftp_root / IPXE_DIR), *(shim_dirs if loader == "grub" else [])]


def uses_shim(facts: ClientFacts, arch: int) -> bool:
    """Whether loader "grub" sends this client shim: UEFI PXE on x64 and arm64 only. HTTP
    Boot clients keep iPXE: Debian 12's signed GRUB cannot read its config over HTTP."""
    return arch in CHAINS and not facts.http_client and arch != ARCH_EFI_X64_HTTP
