"""The PXE part of a DHCP reply, shared by proxyDHCP and the full server."""

from __future__ import annotations

from typing import Any

from netboot.boot.pxe import PxeAnswer
from netboot.dhcp.packet import DhcpRequest

# Option 43, PXE vendor options: sub-option 6 (PXE_DISCOVERY_CONTROL) = 8 tells a PXE ROM to
# download the boot file named in this offer at once: no boot-server discovery, no menu.
PXE_SKIP_DISCOVERY = bytes([6, 1, 8, 255])

# For iPXE the same, plus a one-item boot menu (sub-option 9: type 0x8000, "netboot").
# iPXE counts a proxy offer or ProxyDHCPACK as carrying PXE options only when it has a boot
# menu (older builds, such as Debian's, ignore the boot file name there) and otherwise drops
# the ACK; with discovery control 8 and a file name it still skips the menu and boots the file.
_MENU_ITEM = (0x8000).to_bytes(2, "big") + bytes([7]) + b"netboot"
PXE_SKIP_DISCOVERY_WITH_MENU = bytes([6, 1, 8, 9, len(_MENU_ITEM)]) + _MENU_ITEM + bytes([255])


def pxe_options(request: DhcpRequest, answer: PxeAnswer) -> list[tuple[str | int, Any]]:
    """Options 60, 97 and 43 for a PXE answer (53, 54 are added by the encoder)."""
    options: list[tuple[str | int, Any]] = [("vendor_class_id", answer.vendor_class.encode())]
    if request.guid is not None:
        options.append(("pxe_client_machine_identifier", request.guid))
    if answer.vendor_class == "PXEClient":
        # A menu only for iPXE: UEFI firmware treats an offer with a menu as PXE 1.0 and starts
        # boot-server discovery instead of fetching the file.
        vendor = PXE_SKIP_DISCOVERY_WITH_MENU if answer.ipxe else PXE_SKIP_DISCOVERY
        options.append(("vendor_specific", vendor))
    if answer.via_http:  # UEFI HTTP Boot reads the URI from option 67 as well
        options.append(("boot-file-name", answer.boot_file.encode()))
    return options
