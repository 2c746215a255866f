"""What a PXE client is handed: the boot file for its firmware, or the script URL for iPXE.

Transports (proxyDHCP, full DHCP) never decide this themselves; they ask here. The table
follows RFC 4578 option 93 and the IANA processor architecture registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netboot.config import Config
from netboot.dhcp.packet import DhcpRequest
from netboot.layout import IPXE_DIR

ARCH_BIOS = 0
ARCH_EFI_IA32 = 6
ARCH_EFI_BC = 7
ARCH_EFI_X64 = 9
ARCH_EFI_ARM64 = 11
ARCH_EFI_X64_HTTP = 16

# arch -> (firmware name, config key of the boot file, fallback key)
ARCH_TABLE: dict[int, tuple[str, str, str | None]] = {
    ARCH_BIOS: ("bios", "bios", None),
    ARCH_EFI_IA32: ("efi-ia32", "efi_ia32", None),
    ARCH_EFI_BC: ("efi-x64", "efi_x64", "efi_x64_fallback"),
    ARCH_EFI_X64: ("efi-x64", "efi_x64", "efi_x64_fallback"),
    ARCH_EFI_ARM64: ("efi-arm64", "efi_arm64", None),
    ARCH_EFI_X64_HTTP: ("efi-x64-http", "http_x64", None),
}


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


class BootPolicy:
    """Maps what a client told us to what it boots."""

    def __init__(self, config: Config, server_ip: str, http_port: int) -> None:
        self.config = config
        self.server_ip = server_ip
        self.http_port = http_port

    @property
    def http_base(self) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{self.server_ip}{port}"

    @property
    def script_url(self) -> str:
        return f"{self.http_base}/boot.ipxe"

    def _binary(self, name: str) -> Path:
        return self.config.tftp_root / IPXE_DIR / name

    def pxe_answer(self, request: DhcpRequest) -> PxeAnswer | NoAnswer:
        arch = request.arch
        if request.is_ipxe:
            # Already running iPXE: hand it the script, which breaks the chainload loop.
            firmware = ARCH_TABLE.get(arch, ("unknown", "", None))[0] if arch is not None else ""
            return PxeAnswer(self.script_url, "PXEClient", firmware or "unknown", arch, True)
        if arch is None:
            arch = ARCH_BIOS  # PXE 2.1 ROMs that predate RFC 4578 are BIOS
        entry = ARCH_TABLE.get(arch)
        if entry is None:
            return NoAnswer(f"unsupported client architecture {arch}")
        firmware, key, fallback = entry
        ipxe = self.config.ipxe
        names = [getattr(ipxe, key)] + ([getattr(ipxe, fallback)] if fallback else [])
        for name in names:
            if self._binary(name).is_file():
                break
        else:
            return NoAnswer(f"no iPXE binary for {firmware} (looked for {', '.join(names)})")
        if arch == ARCH_EFI_X64_HTTP or request.is_http_client:
            url = f"{self.http_base}/{IPXE_DIR}/{name}"
            return PxeAnswer(url, "HTTPClient", firmware, arch, False)
        return PxeAnswer(f"{IPXE_DIR}/{name}", "PXEClient", firmware, arch, False)
