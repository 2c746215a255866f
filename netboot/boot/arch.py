"""Client system architectures (RFC 4578 option 93, IANA processor architecture registry).

One table: the firmware name a number stands for (logs, client records) and which `[ipxe]`
config key names its boot file, with a fallback key when the first file may be missing.
"""

from __future__ import annotations

from dataclasses import dataclass

ARCH_BIOS = 0
ARCH_EFI_IA32 = 6
ARCH_EFI_BC = 7
ARCH_EFI_X64 = 9
ARCH_EFI_ARM64 = 11
ARCH_EFI_X64_HTTP = 16


@dataclass(frozen=True)
class Arch:
    """One option 93 value: its firmware name and the `[ipxe]` keys of its boot file."""

    firmware: str
    boot_file_key: str
    fallback_key: str | None = None


ARCH_TABLE: dict[int, Arch] = {
    ARCH_BIOS: Arch("bios", "bios"),
    ARCH_EFI_IA32: Arch("efi-ia32", "efi_ia32"),
    ARCH_EFI_BC: Arch("efi-x64", "efi_x64", "efi_x64_fallback"),
    ARCH_EFI_X64: Arch("efi-x64", "efi_x64", "efi_x64_fallback"),
    ARCH_EFI_ARM64: Arch("efi-arm64", "efi_arm64"),
    ARCH_EFI_X64_HTTP: Arch("efi-x64-http", "http_x64"),
}


def firmware_name(arch: int | None) -> str:
    """'bios', 'efi-x64', ... for a known arch; 'unknown' otherwise (or when not sent)."""
    entry = ARCH_TABLE.get(arch) if arch is not None else None
    return entry.firmware if entry is not None else "unknown"
