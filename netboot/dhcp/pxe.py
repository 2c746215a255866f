"""The PXE part of a DHCP reply, shared by proxyDHCP and the full server."""

from __future__ import annotations

from typing import Any

from netboot.dhcp.packet import DhcpRequest
from netboot.policy import PxeAnswer

# Option 43, PXE vendor options: sub-option 6 (PXE_DISCOVERY_CONTROL) = 8 tells a PXE ROM to
# download the boot file named in this offer at once: no boot-server discovery, no menu.
PXE_SKIP_DISCOVERY = bytes([6, 1, 8, 255])


def pxe_options(request: DhcpRequest, answer: PxeAnswer) -> list[tuple[str | int, Any]]:
    """Options 60, 97 and 43 for a PXE answer (53, 54 are added by the encoder)."""
    options: list[tuple[str | int, Any]] = [("vendor_class_id", answer.vendor_class.encode())]
    if request.guid is not None:
        options.append(("pxe_client_machine_identifier", request.guid))
    if answer.vendor_class == "PXEClient" and not answer.ipxe:
        options.append(("vendor_specific", PXE_SKIP_DISCOVERY))
    if answer.via_http:  # UEFI HTTP Boot reads the URI from option 67 as well
        options.append(("boot-file-name", answer.boot_file.encode()))
    return options
